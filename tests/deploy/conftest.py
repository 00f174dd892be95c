"""Shared checks for the deployment tests: is a command line a real `radscribe` command?"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from app.cli.main import build_parser


def radscribe_command_error(args: Sequence[str]) -> str | None:
    """None when ``radscribe ARGS`` names a sub-command that exists, else why not."""
    parser = build_parser()
    parser.exit_on_error = False
    try:
        parsed = parser.parse_args(list(args))
    except (SystemExit, Exception) as exc:  # argparse exits on some errors even so
        return f"`radscribe {' '.join(args)}` is not a radscribe command ({exc})"
    if getattr(parsed, "handler", None) is None:
        return f"`radscribe {' '.join(args)}` names no sub-command"
    return None


@pytest.fixture
def check_radscribe_command() -> Callable[[Sequence[str]], str | None]:
    """None for a real `radscribe` command line, else why it is not one."""
    return radscribe_command_error
