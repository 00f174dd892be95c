"""`radscribe user add NAME --role ROLE [--password-stdin]`."""

from __future__ import annotations

import argparse
import getpass
import sys

from app.core.db import make_engine, make_session_factory, transaction
from app.core.domain import Role
from app.core.settings import Settings
from app.services.users import UserError, create_user


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("user", help="manage user accounts")
    user_sub = parser.add_subparsers(title="user commands", metavar="USER_COMMAND", required=True)
    add = user_sub.add_parser("add", help="create a user (password from a prompt or stdin)")
    add.add_argument("name", help="login name")
    add.add_argument("--role", required=True, choices=[role.value for role in Role])
    add.add_argument("--display-name", default="", help="name shown on reports")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(handler=run_add)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise UserError("the passwords differ")
    return first


def run_add(args: argparse.Namespace, settings: Settings) -> int:
    engine = make_engine(settings.effective_database_url)
    try:
        password = _read_password(args.password_stdin)
        with transaction(make_session_factory(engine)) as session:
            user = create_user(
                session,
                username=args.name,
                role=Role(args.role),
                password=password,
                display_name=args.display_name,
                actor="cli",
            )
            print(f"created {user.role.value} {user.username!r}")
    except UserError as exc:
        print(f"radscribe user add: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0
