"""`radscribe version`."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

from app.core.settings import Settings


def package_version() -> str:
    try:
        return version("radscribe")
    except PackageNotFoundError:  # running from a checkout without an install
        return "0+unknown"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("version", help="print the Radscribe version")
    parser.set_defaults(handler=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings) -> int:
    print(package_version())
    return 0
