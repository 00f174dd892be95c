"""Where Radscribe's shipped resources live, in a checkout and in a wheel.

``migrations/`` and ``templates/`` sit at the top of the repository and are
copied into the wheel under ``app/_resources``.  This is the one place that
knows both layouts.
"""

from __future__ import annotations

from pathlib import Path

_APP_DIR = Path(__file__).resolve().parent.parent
_INSTALLED = _APP_DIR / "_resources"
_CHECKOUT = _APP_DIR.parent


def resource_dir(name: str) -> Path:
    """Return the directory of a shipped resource (``migrations`` or ``templates``)."""
    for base in (_INSTALLED, _CHECKOUT):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"Radscribe resource folder {name!r} is missing from the install")


def migrations_dir() -> Path:
    return resource_dir("migrations")


def templates_dir() -> Path:
    return resource_dir("templates")
