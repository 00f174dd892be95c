"""Render a structured report as plain text (for HL7 and the editor) and as HTML."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.core.paths import templates_dir
from app.reporting.schema import AI_BANNER, DEMO_BANNER, NOT_ASSESSED, StructuredReport


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(templates_dir() / "reports"),
        autoescape=select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=False
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(AI_BANNER=AI_BANNER, DEMO_BANNER=DEMO_BANNER, NOT_ASSESSED=NOT_ASSESSED)
    return env


def render_text(report: StructuredReport) -> str:
    return _environment().get_template("report.txt.j2").render(report=report)


def render_html(report: StructuredReport) -> str:
    return _environment().get_template("report.html.j2").render(report=report)
