"""Settings come from RADSCRIBE_* variables and refuse bad values with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.settings import Environment, SettingsError, load_settings

GOOD_SECRET = "x" * 48


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("RADSCRIBE_"):
            monkeypatch.delenv(name)


def test_production_is_the_default_and_needs_a_secret() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "RADSCRIBE_SECRET_KEY" in str(error.value)
    assert load_settings(secret_key=GOOD_SECRET).env is Environment.PRODUCTION


@pytest.mark.parametrize("secret", ["changeme", "secret", "short-but-not-placeholder"])
def test_production_refuses_placeholder_or_short_secrets(secret: str) -> None:
    with pytest.raises(SettingsError, match="RADSCRIBE_SECRET_KEY"):
        load_settings(secret_key=secret)


def test_development_runs_without_a_secret() -> None:
    settings = load_settings(env="development")
    assert settings.effective_secret_key
    assert not settings.is_production


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RADSCRIBE_ENV", "development")
    monkeypatch.setenv("RADSCRIBE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RADSCRIBE_DICOM_PORT", "11999")
    monkeypatch.setenv("RADSCRIBE_DICOM_ALLOWED_AES", "ORTHANC, PACS@10.0.0.5 ,")
    settings = load_settings()
    assert settings.dicom_port == 11999
    assert settings.dicom_allowed_aes == ("ORTHANC", "PACS@10.0.0.5")
    assert settings.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'radscribe.db'}"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RADSCRIBE_DICOM_PORT", "70000", "not a TCP port"),
        ("RADSCRIBE_HTTP_PORT", "eighty", "RADSCRIBE_HTTP_PORT"),
        ("RADSCRIBE_DICOM_AE_TITLE", "A_TITLE_LONGER_THAN_16", "AE title"),
        ("RADSCRIBE_ENV", "staging", "RADSCRIBE_ENV"),
        ("RADSCRIBE_DICOM_QUIET_SECONDS", "-1", "must not be negative"),
        ("RADSCRIBE_HL7_PROCESSING_ID", "X", "MSH-11"),
        ("RADSCRIBE_LOG_LEVEL", "LOUD", "log level"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("RADSCRIBE_ENV", "development")
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    text = str(error.value)
    assert variable in text
    assert message in text
