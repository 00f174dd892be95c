"""The README shows the two set-up commands first and a settings table that is current."""

from __future__ import annotations

from pathlib import Path

from app.core.settings_doc import END, START, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_starts_with_make_demo_and_make_test() -> None:
    text = README.read_text()
    block = text.split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"]


def test_settings_table_matches_the_settings_class() -> None:
    text = README.read_text()
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == markdown_table(), (
        "run: .venv/bin/python -m app.core.settings_doc --write README.md"
    )
