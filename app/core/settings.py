"""One settings class for every Radscribe process.

Values come from the environment with the prefix ``RADSCRIBE_`` (for example
``RADSCRIBE_DATA_DIR``).  Settings are built by :func:`load_settings` and passed
to whoever needs them; nothing reads the environment at import time.
"""

from __future__ import annotations

import enum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "dev", "development"})
MIN_SECRET_LENGTH = 32
DEVELOPMENT_SECRET = "development-only-secret-not-for-production"


class Environment(enum.StrEnum):
    PRODUCTION = "production"
    DEVELOPMENT = "development"


class SettingsError(ValueError):
    """Settings could not be built; the message lists every bad value."""


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (1-65535)")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RADSCRIBE_", extra="ignore", frozen=True, validate_default=True
    )

    env: Environment = Field(
        default=Environment.PRODUCTION,
        description="production or development; production refuses a missing or placeholder "
        "secret and demonstration model weights.",
    )
    data_dir: Path = Field(
        default=Path("./radscribe-data"),
        description="Local files: the SQLite database, DICOM storage, dictation audio.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite under DATA_DIR."
    )
    secret_key: str = Field(
        default="",
        description="Signs sessions and CSRF tokens; at least 32 random characters in production.",
    )
    log_json: bool = Field(
        default=False,
        description="Write log lines as JSON.",
    )
    log_level: str = Field(
        default="INFO",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL; patient data is only logged "
        "at DEBUG.",
    )

    http_host: str = Field(
        default="127.0.0.1",
        description="Address the web app binds to.",
    )
    http_port: int = Field(
        default=8000,
        description="Port of the web app.",
    )
    metrics_port: int = Field(
        default=9108,
        description="Port of /metrics for processes without a web server.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics endpoint of processes without a web server binds to "
        "(0.0.0.0 in containers, so Prometheus can scrape it).",
    )

    dicom_host: str = Field(
        default="0.0.0.0",
        description="Address the DICOM node binds to.",
    )
    dicom_port: int = Field(
        default=11112,
        description="Port of the DICOM node.",
    )
    dicom_ae_title: str = Field(
        default="RADSCRIBE",
        description="AE title of the DICOM node.",
    )
    dicom_allowed_aes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Calling AE titles allowed to send, comma-separated: AET, AET@host (the "
        "peer's address must match too) or * for anyone. Unknown callers are rejected at "
        "association. Empty means: nobody in production, anyone (*) in development (see "
        "dicom_effective_allowed_aes).",
    )
    dicom_quiet_seconds: float = Field(
        default=2.0,
        description="A series is ready once its association has ended and no instance arrived "
        "for this long.",
    )
    dicom_stale_seconds: float = Field(
        default=300.0,
        description="A series whose association never ended (for example the receiver died) "
        "is ready after this long without new instances.",
    )
    dicom_max_associations: int = Field(
        default=16, description="Concurrent associations, summed over receiver processes."
    )
    dicom_max_pdu: int = Field(
        default=262_144, description="Largest PDU the node accepts (bytes; 0 = unlimited)."
    )
    dicom_min_free_bytes: int = Field(
        default=1_000_000_000,
        description="Below this much free disk the node refuses instances (out of resources).",
    )
    dicom_workers: int = Field(
        default=1,
        description="Receiver processes of `radscribe dicom serve`, sharing one listening "
        "socket; an idle process takes each new association first.",
    )
    dicom_min_series_slices: int = Field(
        default=20, description="Fewer slices than this and a CT series is not drafted."
    )
    dicom_tls_certificate: Path | None = Field(
        default=None, description="PEM certificate (chain) for DICOM TLS; unset = no TLS."
    )
    dicom_tls_private_key: Path | None = Field(
        default=None, description="PEM private key of dicom_tls_certificate."
    )
    dicom_tls_client_ca: Path | None = Field(
        default=None,
        description="PEM CA bundle; when set, DICOM callers must present a certificate it signed.",
    )

    hl7_host: str = Field(
        default="0.0.0.0",
        description="Address the inbound MLLP listener binds to.",
    )
    hl7_port: int = Field(
        default=2575,
        description="Port of the inbound MLLP listener.",
    )
    emr_hl7_host: str | None = Field(
        default=None,
        description="Host of the EMR's MLLP receiver for signed reports; unset = no sending.",
    )
    emr_hl7_port: int | None = Field(
        default=None,
        description="Port of the EMR's MLLP receiver.",
    )
    hl7_processing_id: str = Field(
        default="P",
        description="MSH-11 of outbound messages: P production, T test, D debugging.",
    )
    order_wait_seconds: float = Field(
        default=60.0,
        description="How long drafting waits for a late order before drafting without it.",
    )
    hl7_send_preliminary: bool = Field(
        default=False, description="Send a signed preliminary to the EMR as ORU^R01 (OBR-25 P)."
    )
    hl7_ack_timeout_seconds: float = Field(
        default=10.0, description="How long the outbox sender waits for the EMR's ACK."
    )
    hl7_max_attempts: int = Field(
        default=12, description="Delivery attempts before an outbound message is dead-lettered."
    )
    hl7_retry_base_seconds: float = Field(
        default=1.0, description="First retry delay; each later one doubles (exponential backoff)."
    )
    hl7_retry_max_seconds: float = Field(default=300.0, description="Longest retry delay.")
    hl7_outbox_poll_seconds: float = Field(
        default=0.1, description="How often the sender looks for newly signed reports."
    )
    hl7_lease_seconds: float = Field(
        default=15.0, description="The sender's database lease; another process takes over after."
    )
    hl7_max_message_bytes: int = Field(
        default=16 * 1024 * 1024, description="Largest inbound HL7 message accepted."
    )

    whisper_model_dir: Path | None = Field(
        default=None,
        description="CTranslate2 Whisper model: a directory, the directories of a split model "
        "joined by ':', or a packaged model name (tiny.en, base). Default: tiny.en.",
    )
    whisper_device: str = Field(default="cpu", description="cpu, cuda or auto.")
    whisper_compute_type: str = Field(
        default="int8", description="CTranslate2 compute type: int8, int8_float16, float16, ..."
    )
    whisper_cpu_threads: int = Field(
        default=0,
        description="CPU threads for each Whisper worker; 0 shares the cores out among them.",
    )
    whisper_workers: int = Field(
        default=2,
        ge=1,
        description="Chunks of one dictation Whisper decodes at once (2 workers of 1 thread "
        "beat 1 of 2 threads on two cores).",
    )
    whisper_second_look: bool = Field(
        default=True,
        description="Decode each chest dictation chunk again with the chest CT terms its first "
        "transcription sounds like named in Whisper's prompt: fewer misheard terms (tuning set, "
        "2026-11-30: tiny.en 23.5 -> 19.8 % WER, base 18.8 -> 15.1 %) for about 55 % more CPU "
        "time (tiny.en CPU-RTF 0.020 -> 0.031; bench/bench_transcribe.py --set tuning "
        "[--no-bias]).",
    )
    dictation_max_seconds: float = Field(
        default=1200.0, description="Longest dictation accepted, in seconds."
    )

    checkpoint: Path | None = Field(
        default=None,
        description="Model checkpoint (its .json sidecar); unset = the shipped weights.",
    )
    allow_demo_model: bool = Field(
        default=False,
        description="Allow weights not validated for clinical use in production; drafts are "
        "then labelled a demonstration.",
    )
    model_device: str = Field(
        default="cpu",
        description="Where the drafting model runs: cpu, cuda or cuda:N (the CUDA image sets "
        "cuda).",
    )
    model_precision: Literal["fp32", "bf16", "int8"] | None = Field(
        default=None,
        description="The drafting model's full form: fp32, bf16 or int8 (CPU only); unset = "
        "bf16 on a GPU, int8 on the CPU.",
    )
    draft_batch_size: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Drafting jobs a worker process runs at once; their model stages run as "
        "one batch (worth it on a GPU). 1 = one job at a time.",
    )
    draft_batch_window_ms: float = Field(
        default=100.0,
        ge=0.0,
        le=5000.0,
        description="How long the first job of a batch waits for others to join it.",
    )

    load_adaptive_precision: bool = Field(
        default=False,
        description="On a GPU worker, draft with a lighter validated form of the model while "
        "the GPU stays busy (see the load_adaptive_* settings). Where no GPU reading works it "
        "reports itself unavailable and stays off.",
    )
    load_adaptive_light_checkpoint: Path | None = Field(
        default=None,
        description="The lighter form's checkpoint (a distilled student's .json sidecar); "
        "unset = the drafting checkpoint itself, in load_adaptive_light_precision.",
    )
    load_adaptive_light_precision: Literal["fp32", "bf16", "int8"] = Field(
        default="int8",
        description="Precision of the lighter form; int8 runs on the CPU, the others on "
        "model_device.",
    )
    load_adaptive_evaluation: Path | None = Field(
        default=None,
        description="Evaluation record of both forms on the same studies (distillation.json "
        "of `radscribe distill`); the lighter form is used only if it shows its macro AUROC "
        "within load_adaptive_auroc_tolerance of the full form's. Unset = switches are refused.",
    )
    load_adaptive_auroc_tolerance: float = Field(
        default=0.01,
        description="Most macro AUROC the lighter form may lose against the full form "
        "(0.01 = one point).",
    )
    load_adaptive_up_percent: float = Field(
        default=85.0,
        description="GPU utilisation (%) above which, held for load_adaptive_hold_seconds, the "
        "lighter form takes over.",
    )
    load_adaptive_down_percent: float = Field(
        default=60.0,
        description="GPU utilisation (%) below which, held for load_adaptive_hold_seconds, the "
        "full form comes back.",
    )
    load_adaptive_hold_seconds: float = Field(
        default=120.0,
        description="How long utilisation must stay past a threshold before the form changes.",
    )
    load_adaptive_sample_seconds: float = Field(
        default=5.0, description="How often a worker reads its GPU's utilisation."
    )

    celery_broker_url: str | None = Field(
        default=None,
        description="Redis URL for Celery workers (radscribe worker); unset = in-process workers.",
    )
    viewer_url_template: str | None = Field(
        default=None,
        description="Hospital viewer link with {study_instance_uid}, e.g. "
        "https://pacs.example/viewer?study={study_instance_uid}.",
    )

    # The radiologist's web app.
    session_idle_minutes: float = Field(
        default=30.0, description="Log a user off after this long without activity."
    )
    session_max_hours: float = Field(
        default=12.0, description="A session ends this long after login, active or not."
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag of the session cookie: unset = only when the request came "
        "over HTTPS (behind TLS), true = always, false = never.",
    )
    claim_minutes: float = Field(
        default=20.0, description="How long opening a study holds it for its reader."
    )
    login_throttle_failures: int = Field(
        default=5, description="Failed logins (per user name or address) before logins slow down."
    )
    login_throttle_window_minutes: float = Field(
        default=15.0, description="How far back failed logins count for the slow-down."
    )
    login_throttle_max_seconds: float = Field(
        default=60.0, description="Longest wait between login attempts (never a lock-out)."
    )
    worklist_refresh_seconds: float = Field(
        default=20.0, description="How often an open worklist refreshes itself."
    )
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer URL; unset = password login only."
    )
    oidc_client_id: str | None = Field(
        default=None,
        description="OpenID Connect client ID.",
    )
    oidc_client_secret: str | None = Field(
        default=None,
        description="OpenID Connect client secret.",
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        description="ID-token claim matched against Radscribe user names.",
    )

    @field_validator("http_port", "metrics_port", "dicom_port", "hl7_port")
    @classmethod
    def _check_port(cls, value: int) -> int:
        return _port(value)

    @field_validator("emr_hl7_port")
    @classmethod
    def _check_optional_port(cls, value: int | None) -> int | None:
        return None if value is None else _port(value)

    @field_validator("dicom_ae_title")
    @classmethod
    def _check_ae_title(cls, value: str) -> str:
        title = value.strip()
        if not 1 <= len(title) <= 16 or not title.isascii() or "\\" in title:
            raise ValueError("an AE title is 1-16 ASCII characters without a backslash")
        return title

    @field_validator("dicom_allowed_aes", mode="before")
    @classmethod
    def _split_aes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("dicom_allowed_aes")
    @classmethod
    def _check_allowed_aes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            title, sep, host = entry.partition("@")
            title = title.strip()
            if entry.strip() == "*":
                continue
            if not 1 <= len(title) <= 16 or not title.isascii() or "\\" in title:
                raise ValueError(f"{entry!r}: expected *, AET or AET@host (AET: 1-16 ASCII)")
            if sep and not host.strip():
                raise ValueError(f"{entry!r}: host after '@' is empty")
        return value

    @field_validator("dicom_workers", "dicom_max_associations", "dicom_min_series_slices")
    @classmethod
    def _check_dicom_count(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("dicom_max_pdu")
    @classmethod
    def _check_max_pdu(cls, value: int) -> int:
        if value != 0 and not 4096 <= value <= 2**32 - 1:
            raise ValueError("0 (unlimited) or 4096..4294967295 bytes")
        return value

    @model_validator(mode="after")
    def _check_dicom_tls(self) -> Settings:
        if (self.dicom_tls_certificate is None) != (self.dicom_tls_private_key is None):
            raise ValueError(
                "RADSCRIBE_DICOM_TLS_CERTIFICATE and RADSCRIBE_DICOM_TLS_PRIVATE_KEY go together"
            )
        if self.dicom_tls_client_ca is not None and self.dicom_tls_certificate is None:
            raise ValueError("RADSCRIBE_DICOM_TLS_CLIENT_CA needs a DICOM TLS certificate")
        return self

    @field_validator("model_device")
    @classmethod
    def _check_model_device(cls, value: str) -> str:
        device = value.strip().lower()
        kind, _, index = device.partition(":")
        if kind not in {"cpu", "cuda"} or (index and (kind == "cpu" or not index.isdigit())):
            raise ValueError("the model runs on cpu, cuda or cuda:N")
        return device

    @model_validator(mode="after")
    def _check_load_adaptive(self) -> Settings:
        if self.model_precision == "int8" and self.model_device != "cpu":
            raise ValueError("RADSCRIBE_MODEL_PRECISION=int8 runs on the CPU only")
        if not 0.0 <= self.load_adaptive_down_percent < self.load_adaptive_up_percent <= 100.0:
            raise ValueError(
                "load-adaptive thresholds need 0 <= RADSCRIBE_LOAD_ADAPTIVE_DOWN_PERCENT < "
                "RADSCRIBE_LOAD_ADAPTIVE_UP_PERCENT <= 100"
            )
        if self.load_adaptive_hold_seconds < 0 or self.load_adaptive_auroc_tolerance < 0:
            raise ValueError(
                "RADSCRIBE_LOAD_ADAPTIVE_HOLD_SECONDS and RADSCRIBE_LOAD_ADAPTIVE_AUROC_TOLERANCE "
                "must not be negative"
            )
        if self.load_adaptive_sample_seconds <= 0:
            raise ValueError("RADSCRIBE_LOAD_ADAPTIVE_SAMPLE_SECONDS must be greater than zero")
        return self

    @field_validator("whisper_device")
    @classmethod
    def _check_whisper_device(cls, value: str) -> str:
        device = value.strip().lower()
        if device not in {"cpu", "cuda", "auto"}:
            raise ValueError("Whisper runs on cpu, cuda or auto")
        return device

    @field_validator("whisper_cpu_threads")
    @classmethod
    def _check_whisper_threads(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative (0 shares the cores out among the workers)")
        return value

    @field_validator("dictation_max_seconds")
    @classmethod
    def _check_dictation_length(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("dicom_quiet_seconds", "dicom_stale_seconds", "order_wait_seconds")
    @classmethod
    def _check_non_negative(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator(
        "hl7_ack_timeout_seconds",
        "hl7_retry_base_seconds",
        "hl7_retry_max_seconds",
        "hl7_outbox_poll_seconds",
        "hl7_lease_seconds",
    )
    @classmethod
    def _check_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("hl7_max_attempts", "hl7_max_message_bytes")
    @classmethod
    def _check_positive_count(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("hl7_processing_id")
    @classmethod
    def _check_processing_id(cls, value: str) -> str:
        if value not in {"P", "T", "D"}:
            raise ValueError("HL7 processing ID (MSH-11) is P, T or D")
        return value

    @field_validator(
        "session_idle_minutes",
        "session_max_hours",
        "claim_minutes",
        "login_throttle_window_minutes",
        "login_throttle_max_seconds",
        "worklist_refresh_seconds",
    )
    @classmethod
    def _check_positive_duration(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("login_throttle_failures")
    @classmethod
    def _check_throttle_failures(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("viewer_url_template")
    @classmethod
    def _check_viewer_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if "{study_instance_uid}" not in value:
            raise ValueError("the viewer URL template needs the placeholder {study_instance_uid}")
        if not value.startswith(("https://", "http://")):
            raise ValueError("the viewer URL template must be an http(s) URL")
        return value.strip()

    @field_validator("oidc_issuer")
    @classmethod
    def _check_oidc_issuer(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("the OpenID Connect issuer must be an http(s) URL")
        return value.strip().rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("log level is DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError(
                "RADSCRIBE_OIDC_ISSUER needs RADSCRIBE_OIDC_CLIENT_ID and "
                "RADSCRIBE_OIDC_CLIENT_SECRET"
            )
        return self

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        placeholder = self.secret_key.strip().lower() in PLACEHOLDER_SECRETS
        if self.is_production and (placeholder or len(self.secret_key) < MIN_SECRET_LENGTH):
            raise ValueError(
                f"RADSCRIBE_SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_LENGTH} characters in production (for example: python -c "
                "'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.env is Environment.PRODUCTION

    @cached_property
    def effective_secret_key(self) -> str:
        return self.secret_key or DEVELOPMENT_SECRET

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'radscribe.db').resolve()}"

    @property
    def dicom_storage_dir(self) -> Path:
        return self.data_dir / "dicom"

    @property
    def dicom_effective_allowed_aes(self) -> tuple[str, ...]:
        """The allowed-AE rules in force: an empty setting allows nobody in production
        and anyone in development (so the demo works out of the box)."""
        if self.dicom_allowed_aes:
            return self.dicom_allowed_aes
        return () if self.is_production else ("*",)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and explicit overrides).

    Raises :class:`SettingsError` with one line per bad value, naming the
    environment variable, so a service can refuse to start with a clear message.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            name = f"RADSCRIBE_{field.upper()}" if error["loc"] else "settings"
            lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
