"""The `radscribe` command as a user runs it: a real process, real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RADSCRIBE = [sys.executable, "-m", "app.cli.main"]


def _run(
    args: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RADSCRIBE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RADSCRIBE_")}
    clean.update(RADSCRIBE_ENV="development", RADSCRIBE_DATA_DIR=str(tmp_path / "data"))
    return clean


def test_help_lists_the_commands(env: dict[str, str]) -> None:
    result = _run(["--help"], env)
    assert result.returncode == 0
    for command in ("version", "db", "user", "serve", "demo"):
        assert command in result.stdout


def test_version_works_unconfigured(env: dict[str, str]) -> None:
    env.pop("RADSCRIBE_ENV")
    result = _run(["version"], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_production_without_secret_refuses_to_start(env: dict[str, str]) -> None:
    env["RADSCRIBE_ENV"] = "production"
    result = _run(["db", "upgrade"], env)
    assert result.returncode == 2
    assert "RADSCRIBE_SECRET_KEY" in result.stderr


def test_user_add_hashes_and_refuses_duplicates(env: dict[str, str]) -> None:
    assert _run(["db", "upgrade"], env).returncode == 0
    first = _run(
        ["user", "add", "alice", "--role", "radiologist", "--password-stdin"],
        env,
        stdin="correct horse battery\n",
    )
    assert first.returncode == 0, first.stderr
    again = _run(
        ["user", "add", "alice", "--role", "admin", "--password-stdin"],
        env,
        stdin="correct horse battery\n",
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    short = _run(
        ["user", "add", "bob", "--role", "resident", "--password-stdin"], env, stdin="short\n"
    )
    assert short.returncode == 1
    assert "at least" in short.stderr

    import sqlite3

    db = sqlite3.connect(Path(env["RADSCRIBE_DATA_DIR"]) / "radscribe.db")
    rows = db.execute("SELECT username, role, password_hash FROM users").fetchall()
    audit = db.execute("SELECT action FROM audit_events").fetchall()
    db.close()
    assert [(name, role) for name, role, _ in rows] == [("alice", "radiologist")]
    assert rows[0][2].startswith("$argon2id$")
    assert ("user.create",) in audit


def test_sub_command_help_everywhere(env: dict[str, str]) -> None:
    for args in (["db", "--help"], ["db", "upgrade", "--help"], ["user", "add", "--help"]):
        result = _run(args, env)
        assert result.returncode == 0, args
        assert "usage:" in result.stdout
