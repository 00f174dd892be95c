"""The radiologist's worklist: one query with filters, search, sort and pages.

STAT studies come first by default, then the longest waiting.  The search
text can hold patient names, so the web app takes it from a request body,
never from a URL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.core.domain import Priority, StudyStatus
from app.core.tables import Study, User
from app.services.outbox import as_utc

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_SEARCH_LENGTH = 64
SIGNED = frozenset({StudyStatus.FINAL, StudyStatus.ADDENDED})
OPEN_STATUSES = tuple(s for s in StudyStatus if s not in SIGNED)

STATUS_LABELS: dict[StudyStatus, str] = {
    StudyStatus.RECEIVING: "receiving",
    StudyStatus.READY: "ready",
    StudyStatus.QUEUED: "queued",
    StudyStatus.DRAFTING: "drafting",
    StudyStatus.DRAFT_READY: "draft ready",
    StudyStatus.IN_REVIEW: "in review",
    StudyStatus.PRELIMINARY: "preliminary",
    StudyStatus.FINAL: "final",
    StudyStatus.ADDENDED: "addended",
    StudyStatus.FAILED: "failed",
    StudyStatus.NEEDS_RECONCILIATION: "needs reconciliation",
    StudyStatus.EXPORT_FAILED: "export failed",
}


class Scope(enum.StrEnum):
    OPEN = "open"  # everything not yet signed final
    ALL = "all"
    SIGNED = "signed"


class Claimed(enum.StrEnum):
    ANY = "any"
    MINE = "mine"
    UNCLAIMED = "unclaimed"
    OTHERS = "others"


class Sort(enum.StrEnum):
    PRIORITY = "priority"  # STAT first, then oldest acquisition
    OLDEST = "oldest"
    NEWEST = "newest"
    STATUS = "status"
    ACCESSION = "accession"


class WorklistError(ValueError):
    """A filter value is not one the worklist knows."""


@dataclass(frozen=True)
class WorklistQuery:
    scope: Scope = Scope.OPEN
    statuses: tuple[StudyStatus, ...] = ()
    priority: Priority | None = None
    claimed: Claimed = Claimed.ANY
    search: str = ""
    sort: Sort = Sort.PRIORITY
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    def __post_init__(self) -> None:
        if self.page < 1:
            raise WorklistError("page numbers start at 1")
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise WorklistError(f"page size is 1-{MAX_PAGE_SIZE}")
        if len(self.search) > MAX_SEARCH_LENGTH:
            raise WorklistError(f"search text is at most {MAX_SEARCH_LENGTH} characters")


@dataclass(frozen=True)
class WorklistRow:
    study_id: int
    status: StudyStatus
    priority: Priority
    acquired_at: datetime
    patient_name: str
    patient_id: str
    accession_number: str
    description: str
    reader_id: int | None
    reader_name: str | None
    claim_expires_at: datetime | None

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class WorklistPage:
    rows: list[WorklistRow]
    total: int
    query: WorklistQuery
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.page_size))


def display_name(dicom_name: str) -> str:
    """DICOM PN ``Family^Given^Middle`` as ``Family, Given Middle``."""
    parts = [p.strip() for p in dicom_name.split("=", 1)[0].split("^")]
    family, given = (parts[0] if parts else ""), " ".join(p for p in parts[1:4] if p)
    return f"{family}, {given}" if family and given else family or given


def parse_statuses(values: list[str]) -> tuple[StudyStatus, ...]:
    try:
        return tuple(StudyStatus(v) for v in values if v)
    except ValueError as exc:
        raise WorklistError(str(exc)) from None


def _filtered(query: WorklistQuery, *, user_id: int, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.statuses:
        conditions.append(Study.status.in_(query.statuses))
    elif query.scope is Scope.OPEN:
        conditions.append(Study.status.in_(OPEN_STATUSES))
    elif query.scope is Scope.SIGNED:
        conditions.append(Study.status.in_(tuple(SIGNED)))
    if query.priority is not None:
        conditions.append(Study.priority == query.priority)
    held = and_(Study.claimed_by_id.is_not(None), Study.claim_expires_at > now)
    if query.claimed is Claimed.MINE:
        conditions.append(and_(held, Study.claimed_by_id == user_id))
    elif query.claimed is Claimed.UNCLAIMED:
        conditions.append(~held | Study.claimed_by_id.is_(None))
    elif query.claimed is Claimed.OTHERS:
        conditions.append(and_(held, Study.claimed_by_id != user_id))
    text = query.search.strip()
    if text:
        like = f"%{text.replace('%', '').replace('_', ' ')}%"
        conditions.append(
            or_(
                Study.accession_number.ilike(like),
                Study.dicom_patient_id.ilike(like),
                Study.dicom_patient_name.ilike(like.replace(" ", "%").replace(",", "^")),
                Study.study_description.ilike(like),
            )
        )
    return conditions


_PRIORITY_RANK = case((Study.priority == Priority.STAT, 0), else_=1)
_ACQUIRED = func.coalesce(Study.acquired_at, Study.created_at)


def _ordered(statement: Select[Any], sort: Sort) -> Select[Any]:
    if sort is Sort.PRIORITY:
        return statement.order_by(_PRIORITY_RANK, _ACQUIRED.asc(), Study.id)
    if sort is Sort.OLDEST:
        return statement.order_by(_ACQUIRED.asc(), Study.id)
    if sort is Sort.NEWEST:
        return statement.order_by(_ACQUIRED.desc(), Study.id.desc())
    if sort is Sort.STATUS:
        return statement.order_by(Study.status, _PRIORITY_RANK, _ACQUIRED.asc(), Study.id)
    return statement.order_by(Study.accession_number, Study.id)


_READER = aliased(User)
# Built once: the page's rows by id (the statement is compiled and cached once, too).
_PAGE_ROWS = (
    select(
        Study.id,
        Study.status,
        Study.priority,
        _ACQUIRED.label("acquired"),
        Study.dicom_patient_name,
        Study.dicom_patient_id,
        Study.accession_number,
        Study.study_description,
        Study.claimed_by_id,
        _READER.display_name,
        Study.claim_expires_at,
    )
    .outerjoin(_READER, _READER.id == Study.claimed_by_id)
    .where(Study.id.in_(bindparam("ids", expanding=True)))
)


def query_worklist(
    session: Session, query: WorklistQuery, *, user_id: int, now: datetime
) -> WorklistPage:
    conditions = _filtered(query, user_id=user_id, now=now)
    # Sort narrow rows, then read the page's 50 in full: much less to sort.
    page_ids = _ordered(
        select(Study.id, _PRIORITY_RANK.label("rank"), _ACQUIRED.label("acquired")).where(
            *conditions
        ),
        query.sort,
    )
    # One round trip: the page's ids in order, each row carrying the total count.
    counted = page_ids.add_columns(func.count().over().label("total"))
    found = session.execute(
        counted.limit(query.page_size).offset((query.page - 1) * query.page_size)
    ).all()
    ids = [row.id for row in found]
    by_id = {r.id: r for r in session.execute(_PAGE_ROWS, {"ids": ids})} if ids else {}
    ordered_ids = [i for i in ids if i in by_id]
    rows = []
    for study_id in ordered_ids:
        r = by_id[study_id]
        expires = as_utc(r.claim_expires_at) if r.claim_expires_at else None
        held = r.claimed_by_id is not None and expires is not None and expires > now
        rows.append(
            WorklistRow(
                study_id=r.id,
                status=r.status,
                priority=r.priority,
                acquired_at=as_utc(r.acquired),
                patient_name=display_name(r.dicom_patient_name),
                patient_id=r.dicom_patient_id,
                accession_number=r.accession_number,
                description=r.study_description,
                reader_id=r.claimed_by_id if held else None,
                reader_name=r.display_name if held else None,
                claim_expires_at=expires if held else None,
            )
        )
    if found:
        total = int(found[0].total)
    else:  # a page past the end: count without paging
        total = int(session.scalar(select(func.count()).select_from(Study).where(*conditions)) or 0)
    return WorklistPage(rows=rows, total=total, query=query)
