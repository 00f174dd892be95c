"""The installed Radscribe version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("radscribe")
    except PackageNotFoundError:  # running from a checkout without an install
        return "0+unknown"
