"""Plain domain vocabulary shared by every layer: states, roles, kinds.

No SQLAlchemy, FastAPI or torch here; the tables, services and pages import
these names so there is one spelling of each state.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    RADIOLOGIST = "radiologist"
    RESIDENT = "resident"
    ADMIN = "admin"


class StudyStatus(enum.StrEnum):
    RECEIVING = "receiving"
    READY = "ready"
    QUEUED = "queued"
    DRAFTING = "drafting"
    DRAFT_READY = "draft_ready"
    IN_REVIEW = "in_review"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    ADDENDED = "addended"
    FAILED = "failed"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    EXPORT_FAILED = "export_failed"


class SeriesState(enum.StrEnum):
    RECEIVING = "receiving"
    QUIET = "quiet"
    READY = "ready"
    SELECTED = "selected"
    SKIPPED = "skipped"


class OrderStatus(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DISCONTINUED = "discontinued"


class Priority(enum.StrEnum):
    STAT = "stat"
    ROUTINE = "routine"


class Hl7MessageStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    ERROR = "error"
    REJECTED = "rejected"


class DictationStatus(enum.StrEnum):
    PENDING = "pending"
    TRANSCRIBING = "transcribing"
    DONE = "done"
    FAILED = "failed"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"


class ReportKind(enum.StrEnum):
    DRAFT = "draft"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    ADDENDUM = "addendum"

    @property
    def is_signed(self) -> bool:
        return self in (ReportKind.FINAL, ReportKind.ADDENDUM)


class FlagKind(enum.StrEnum):
    VERIFY = "verify"
    DISCREPANCY = "discrepancy"
    RECONCILIATION = "reconciliation"


class FlagStatus(enum.StrEnum):
    OPEN = "open"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    ACKED = "acked"
    RETRYING = "retrying"
    DEAD = "dead"
