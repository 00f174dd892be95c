"""`radscribe version`."""

from __future__ import annotations

import argparse

from app.core.settings import Settings
from app.core.version import package_version


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("version", help="print the Radscribe version")
    parser.set_defaults(handler=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(package_version())
    return 0
