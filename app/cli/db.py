"""`radscribe db upgrade|downgrade|current`."""

from __future__ import annotations

import argparse

from app.core import migrate
from app.core.db import make_engine
from app.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("db", help="database schema migrations (Alembic)")
    db_sub = parser.add_subparsers(title="db commands", metavar="DB_COMMAND", required=True)

    up = db_sub.add_parser("upgrade", help="migrate the schema up (default: to the newest)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=run_upgrade)

    down = db_sub.add_parser("downgrade", help="migrate the schema down (default: remove it)")
    down.add_argument("revision", nargs="?", default="base")
    down.set_defaults(handler=run_downgrade)

    current = db_sub.add_parser("current", help="print the schema revision")
    current.set_defaults(handler=run_current)


def run_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrate.upgrade(settings.effective_database_url, args.revision)
    print(f"database upgraded to {args.revision}")
    return 0


def run_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    migrate.downgrade(settings.effective_database_url, args.revision)
    print(f"database downgraded to {args.revision}")
    return 0


def run_current(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.effective_database_url)
    try:
        print(migrate.current_revision(engine) or "empty")
    finally:
        engine.dispose()
    return 0
