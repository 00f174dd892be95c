"""Shared checks for the deployment tests: is a command line a real `radscribe` command?"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from app.cli.main import build_parser

# Commands the deployment runs that are not written yet, and why.  A test fails (strict
# xfail) as soon as one exists, so the entry is removed and the command checked like the rest.
PENDING_COMMANDS: dict[str, str] = {
    "worker": "`radscribe worker` (the Celery drafting worker) is a later issue",
}


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


def pending(args: Sequence[str]) -> bool:
    """A command listed in PENDING_COMMANDS that does not exist yet."""
    return bool(args) and args[0] in PENDING_COMMANDS and radscribe_command_error(args) is not None


@pytest.fixture
def check_radscribe_command() -> Callable[[Sequence[str]], str | None]:
    """None for a real command, or one still pending (see test_pending_commands_exist)."""

    def check(args: Sequence[str]) -> str | None:
        return None if pending(args) else radscribe_command_error(args)

    return check
