"""The README's settings table, made from the Settings class so the two never drift.

``python -m app.core.settings_doc`` prints the table; ``--write README.md``
replaces the table between its markers.
"""

from __future__ import annotations

import argparse
import enum
from pathlib import Path

from pydantic.fields import FieldInfo

from app.core.settings import Settings

START = "<!-- settings:start -->"
END = "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None or value == () or value == "":
        return "(unset)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        text = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `RADSCRIBE_{name.upper()}` | {_default(field)} | {text} |")
    return "\n".join(lines)


def replace_table(document: str) -> str:
    if START not in document or END not in document:
        raise ValueError(f"the document has no {START} ... {END} markers")
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{markdown_table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="update the table in this file")
    args = parser.parse_args(argv)
    if args.write:
        args.write.write_text(replace_table(args.write.read_text()))
    else:
        print(markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
