"""The ``radscribe`` command.

Each sub-command lives in its own module under ``app/cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args, settings) -> int``.  A command that must work before
anything is configured sets ``needs_settings=False``.  Handlers stay thin: they parse, call a
service and print.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from app.core.logging import configure_logging
from app.core.settings import Settings, SettingsError, load_settings

# Modules that add sub-commands, in the order `radscribe --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "app.cli.version",
    "app.cli.db",
    "app.cli.users",
    "app.cli.serve",
    "app.cli.demo",
    "app.cli.worker",
    "app.cli.web",
    "app.cli.hl7",
    "app.cli.dicom",
    "app.cli.studies",
    "app.cli.draft",
    "app.cli.transcribe",
    "app.cli.synth",
    "app.cli.train",
    "app.cli.evaluate",
    "app.cli.calibrate",
    "app.cli.distill",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radscribe",
        description="Radscribe: CT report drafting for radiologists (DICOM, HL7, Whisper, AI).",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "needs_settings", True):
            settings = load_settings(**getattr(args, "settings_overrides", {}))
        else:  # commands such as `version` must work before anything is configured
            settings = Settings.model_construct()
    except SettingsError as exc:
        print(f"radscribe: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_lines=settings.log_json)
    result: int = handler(args, settings)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
