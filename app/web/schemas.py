"""The JSON API's request bodies and Public response schemas (only listed fields leave)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.domain import FlagStatus, ReportKind


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserPublic(Public):
    id: int
    username: str
    display_name: str
    role: str


class WorklistSearch(BaseModel):
    """Worklist filters in a body, so search text never lands in a URL."""

    scope: str = "open"
    status: list[str] = Field(default_factory=list)
    priority: str = ""
    claimed: str = "any"
    sort: str = "priority"
    search: str = Field(default="", max_length=64)
    page: int = Field(default=1, ge=1)
    page_size: int = Field(default=50, ge=1, le=200)


class WorklistRowPublic(Public):
    study_id: int
    status: str
    status_label: str
    priority: str
    acquired_at: datetime
    waiting_minutes: int
    patient_name: str
    patient_id: str
    accession_number: str
    description: str
    reader_id: int | None
    reader_name: str | None
    claim_expires_at: datetime | None


class WorklistPagePublic(Public):
    rows: list[WorklistRowPublic]
    total: int
    page: int
    pages: int
    page_size: int


class HolderPublic(Public):
    user_id: int
    name: str
    expires_at: datetime


class StudyPublic(Public):
    id: int
    study_instance_uid: str
    accession_number: str
    study_description: str
    status: str
    priority: str
    acquired_at: datetime | None
    patient_name: str
    patient_id: str
    reconciliation_reason: str | None
    failure_reason: str | None


class OrderPublic(Public):
    accession_number: str
    procedure_text: str | None
    reason_for_exam: str | None
    clinical_history: str | None
    ordering_provider: str | None
    status: str


class FlagPublic(Public):
    id: int
    kind: str
    finding: str | None
    message: str
    status: str


class EditorSectionPublic(Public):
    key: str
    title: str
    text: str


class KeySlicePublic(Public):
    finding: str
    text: str
    probability: float
    slice_index: int | None


class VersionPublic(Public):
    version_number: int
    kind: str
    ai_generated: bool
    author: str | None
    signer: str | None
    cosigner: str | None
    created_at: datetime
    signed_at: datetime | None
    model_version: str | None
    text: str


class DiffLinePublic(Public):
    tag: str
    text: str


class DeliveryPublic(Public):
    control_id: str
    message_type: str
    status: str
    attempts: int
    ack_code: str | None
    last_error: str | None
    created_at: datetime
    acked_at: datetime | None


class DictationPublic(Public):
    id: int
    status: str
    created_at: datetime
    duration_seconds: float | None
    transcript_text: str | None
    sections: dict[str, Any] | None
    error: str | None


class StudyDetailPublic(Public):
    study: StudyPublic
    holder: HolderPublic | None
    held_by_me: bool
    order: OrderPublic | None
    flags: list[FlagPublic]
    open_flags: int
    sign_blocked: str | None
    signed_final: bool
    editor: list[EditorSectionPublic]
    findings: list[KeySlicePublic]
    modality_weights: dict[str, float]
    model_version: str | None
    versions: list[VersionPublic]
    deliveries: list[DeliveryPublic]
    dictations: list[DictationPublic]
    slice_count: int
    windows: list[str]
    viewer_url: str | None


class ReportSave(BaseModel):
    sections: dict[str, str]


class SignRequest(BaseModel):
    kind: ReportKind
    sections: dict[str, str] = Field(default_factory=dict)
    addendum: str = Field(default="", max_length=20_000)
    cosign: bool = False


class SignResult(Public):
    version_number: int
    kind: str
    outbox_control_id: str | None


class FlagResolution(BaseModel):
    resolution: FlagStatus


class AuditEventPublic(Public):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    study_id: int | None
    client_address: str | None
    detail: dict[str, Any] | None


class AuditPagePublic(Public):
    events: list[AuditEventPublic]
    total: int
    page: int
    pages: int


class TurnaroundDayPublic(Public):
    day: date
    count: int
    median_minutes: float
    p90_minutes: float


class AgreementPublic(Public):
    model_version: str
    finding: str
    kept: int
    removed: int
    added: int
    kept_fraction: float | None


class OrderCandidatePublic(Public):
    order_id: int
    accession_number: str
    accession_issuer: str
    status: str
    procedure: str
    patient_name: str
    patient_mrn: str
    patient_birth_date: str | None
    why: str
    linkable: bool


class ReconciliationItemPublic(Public):
    study_id: int
    accession_number: str
    dicom_patient_id: str
    dicom_patient_name: str
    dicom_birth_date: str | None
    description: str
    reason: str
    since: datetime | None
    candidates: list[OrderCandidatePublic]


class ReconciliationLink(BaseModel):
    order_id: int
    note: str = Field(min_length=1, max_length=500)


class ReconciliationDismiss(BaseModel):
    note: str = Field(min_length=1, max_length=500)


class ReconciliationResult(Public):
    study_id: int
    status: str
    order_id: int | None
