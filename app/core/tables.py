"""The database schema: SQLAlchemy 2 typed tables for the whole domain.

Named ``tables`` so it never reads as the ML package ``models``.  Only Alembic
migrations create these tables (``radscribe db upgrade``); ``migrations/env.py``
takes ``Base.metadata`` from here.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    case,
    func,
    literal_column,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.core.domain import (
    DictationStatus,
    FlagKind,
    FlagStatus,
    Hl7MessageStatus,
    JobState,
    OrderStatus,
    OutboxStatus,
    Priority,
    ReportKind,
    Role,
    SeriesState,
    StudyStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    """Store an enum as its lower-case value in a VARCHAR with a CHECK constraint."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_login_at: Mapped[datetime | None]


class Patient(TimestampMixin, Base):
    """A patient as the EMR knows them (PID-3 with its assigning authority)."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("mrn", "issuer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mrn: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")
    family_name: Mapped[str] = mapped_column(String(128), default="")
    given_name: Mapped[str] = mapped_column(String(128), default="")
    birth_date: Mapped[str | None] = mapped_column(String(8))  # YYYYMMDD as in HL7 and DICOM
    sex: Mapped[str | None] = mapped_column(String(1))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"))


class Hl7Message(Base):
    """Every inbound HL7 message, stored raw before it is processed."""

    __tablename__ = "hl7_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    peer: Mapped[str] = mapped_column(String(128), default="")
    control_id: Mapped[str | None] = mapped_column(String(64), index=True)
    message_type: Mapped[str | None] = mapped_column(String(16))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[Hl7MessageStatus] = mapped_column(
        _enum(Hl7MessageStatus, "hl7_message_status"), default=Hl7MessageStatus.RECEIVED
    )
    ack_code: Mapped[str | None] = mapped_column(String(2))
    error: Mapped[str | None] = mapped_column(Text)


class Order(TimestampMixin, Base):
    """An imaging order from the EMR: the clinical context for drafting."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("accession_number", "accession_issuer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    accession_number: Mapped[str] = mapped_column(String(64))
    accession_issuer: Mapped[str] = mapped_column(String(64), default="")
    placer_order_number: Mapped[str | None] = mapped_column(String(64))
    filler_order_number: Mapped[str | None] = mapped_column(String(64))
    procedure_code: Mapped[str | None] = mapped_column(String(64))
    procedure_text: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[Priority] = mapped_column(
        _enum(Priority, "priority"), default=Priority.ROUTINE
    )
    reason_for_exam: Mapped[str | None] = mapped_column(Text)
    clinical_history: Mapped[str | None] = mapped_column(Text)
    ordering_provider: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[OrderStatus] = mapped_column(
        _enum(OrderStatus, "order_status"), default=OrderStatus.OPEN
    )
    message_id: Mapped[int | None] = mapped_column(ForeignKey("hl7_messages.id"))

    patient: Mapped[Patient | None] = relationship()


class Study(TimestampMixin, Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    # Identity as the DICOM headers state it; compared with the order's PID before linking.
    dicom_patient_id: Mapped[str] = mapped_column(String(64), default="")
    dicom_patient_name: Mapped[str] = mapped_column(String(255), default="")
    dicom_birth_date: Mapped[str | None] = mapped_column(String(8))
    dicom_sex: Mapped[str | None] = mapped_column(String(16))
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    accession_issuer: Mapped[str] = mapped_column(String(64), default="")
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(16))
    study_description: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[StudyStatus] = mapped_column(
        _enum(StudyStatus, "study_status"), default=StudyStatus.RECEIVING, index=True
    )
    priority: Mapped[Priority] = mapped_column(
        _enum(Priority, "priority"), default=Priority.ROUTINE
    )
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    reconciliation_reason: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    claimed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claim_expires_at: Mapped[datetime | None]
    acquired_at: Mapped[datetime | None]

    series: Mapped[list[Series]] = relationship(back_populates="study")
    order: Mapped[Order | None] = relationship()


# The worklist's default order: STAT first, then the longest waiting.  Constants are
# inline SQL (not bind parameters) so a query's ORDER BY matches the index expression
# and the first page is read from the index instead of sorting every open study.
STUDY_PRIORITY_RANK = case(
    (Study.priority == literal_column("'stat'"), literal_column("0")), else_=literal_column("1")
)
STUDY_ACQUIRED = func.coalesce(Study.acquired_at, Study.created_at)
Index("ix_studies_worklist_priority", STUDY_PRIORITY_RANK, STUDY_ACQUIRED, Study.id)
Index("ix_studies_worklist_acquired", STUDY_ACQUIRED, Study.id)


class StudyStatusChange(Base):
    """Every status change of a study, for turnaround and audit."""

    __tablename__ = "study_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    from_status: Mapped[StudyStatus | None] = mapped_column(_enum(StudyStatus, "from_status"))
    to_status: Mapped[StudyStatus] = mapped_column(_enum(StudyStatus, "to_status"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Series(TimestampMixin, Base):
    __tablename__ = "series"
    # The ready scan looks for quiet series whose last instance is old enough.
    __table_args__ = (Index(None, "state", "last_instance_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_number: Mapped[int | None]
    series_description: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[SeriesState] = mapped_column(
        _enum(SeriesState, "series_state"), default=SeriesState.RECEIVING
    )
    skip_reason: Mapped[str | None] = mapped_column(Text)
    # Bumped by every new or replaced instance; a ready event fires once per version.
    content_version: Mapped[int] = mapped_column(default=0)
    ready_version: Mapped[int | None]
    instance_count: Mapped[int] = mapped_column(default=0)
    last_instance_at: Mapped[datetime | None]
    ready_at: Mapped[datetime | None]
    selection_score: Mapped[float | None] = mapped_column(Float)
    selection_notes: Mapped[dict[str, Any] | None]

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Digest of the data set bytes as the sender sent them (after the File Meta), in the
    # stored form of dicom_node.digest ("blake3:<hex>"; bare hex is an older SHA-256).
    content_digest: Mapped[str] = mapped_column(String(80))
    instance_number: Mapped[int | None]
    slice_position: Mapped[float | None] = mapped_column(Float)
    # What series selection needs of the header: dicom_node.selection.SliceSummary's
    # record as JSON text (encoded before the receive path's transaction, not by a
    # JSON type inside it), so a ready series is ranked without reading its files;
    # NULL in rows from before revision 0007.
    selection_attributes: Mapped[str | None] = mapped_column(Text)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances")


class Dictation(TimestampMixin, Base):
    __tablename__ = "dictations"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    audio_path: Mapped[str] = mapped_column(String(1024))
    audio_format: Mapped[str] = mapped_column(String(32), default="")
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    status: Mapped[DictationStatus] = mapped_column(
        _enum(DictationStatus, "dictation_status"), default=DictationStatus.PENDING
    )
    transcript_raw: Mapped[str | None] = mapped_column(Text)
    transcript_text: Mapped[str | None] = mapped_column(Text)
    sections: Mapped[dict[str, Any] | None]
    # mean_logprob, no_speech_prob, snr_db, speech_seconds, confidence
    quality: Mapped[dict[str, Any] | None]
    model_name: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)


class Job(TimestampMixin, Base):
    """One drafting job, keyed by study and content version so it runs once."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_id", "content_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_id: Mapped[int | None] = mapped_column(ForeignKey("series.id"))
    content_key: Mapped[str] = mapped_column(String(128))
    state: Mapped[JobState] = mapped_column(
        _enum(JobState, "job_state"), default=JobState.QUEUED, index=True
    )
    stage: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[Priority] = mapped_column(
        _enum(Priority, "priority"), default=Priority.ROUTINE
    )
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any] | None]
    not_before: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None]


class Report(TimestampMixin, Base):
    """The report of one study; its content lives in numbered versions."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), unique=True)

    versions: Mapped[list[ReportVersion]] = relationship(
        back_populates="report", order_by="ReportVersion.version_number"
    )


class ReportVersion(Base):
    __tablename__ = "report_versions"
    __table_args__ = (
        UniqueConstraint("report_id", "version_number"),
        CheckConstraint(
            "kind NOT IN ('final', 'addendum') "
            "OR (signer_id IS NOT NULL AND signed_at IS NOT NULL)",
            name="signed_needs_signer",
        ),
        CheckConstraint("kind = 'draft' OR ai_generated = false", name="only_drafts_are_ai"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    version_number: Mapped[int]
    kind: Mapped[ReportKind] = mapped_column(_enum(ReportKind, "report_kind"))
    ai_generated: Mapped[bool] = mapped_column(Boolean)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    signer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cosigner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    signed_at: Mapped[datetime | None]
    cosigned_at: Mapped[datetime | None]
    model_version: Mapped[str | None] = mapped_column(String(128))
    model_precision: Mapped[str | None] = mapped_column(String(16))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    structured: Mapped[dict[str, Any]]
    rendered_text: Mapped[str] = mapped_column(Text)

    report: Mapped[Report] = relationship(back_populates="versions")


class ReportFlag(TimestampMixin, Base):
    """An editor flag (verify, discrepancy, reconciliation); open flags block signing."""

    __tablename__ = "report_flags"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    report_version_id: Mapped[int | None] = mapped_column(ForeignKey("report_versions.id"))
    kind: Mapped[FlagKind] = mapped_column(_enum(FlagKind, "flag_kind"))
    finding: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    status: Mapped[FlagStatus] = mapped_column(
        _enum(FlagStatus, "flag_status"), default=FlagStatus.OPEN
    )
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None]


class OutboxMessage(Base):
    """An outbound HL7 message, written in the same transaction as the signature."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index(None, "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_version_id: Mapped[int] = mapped_column(ForeignKey("report_versions.id"), index=True)
    # Messages of one patient are delivered in id order.
    ordering_key: Mapped[str] = mapped_column(String(128), index=True)
    control_id: Mapped[str] = mapped_column(String(64), unique=True)
    message_type: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(32), default="emr")
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[OutboxStatus] = mapped_column(
        _enum(OutboxStatus, "outbox_status"), default=OutboxStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    ack_code: Mapped[str | None] = mapped_column(String(2))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]


class AuditEvent(Base):
    """Who did what to which patient data, when and from where. Append-only."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(128))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    client_address: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None]


class Lease(Base):
    """A named lease so one process at a time runs a duty (outbox sender, ready scan)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class WebSession(Base):
    """A logged-in browser session; the cookie carries only its signed id.

    Logout and idle log-off end the row, so a copy of the cookie is useless in
    every web process.  ``id`` is the SHA-256 of the session id, never the id.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    client_address: Mapped[str | None] = mapped_column(String(64))
