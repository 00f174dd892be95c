"""The radiologist's worklist: one query with filters, search, sort and pages.

STAT studies come first by default, then the longest waiting.  The search
text can hold patient names, so the web app takes it from a request body,
never from a URL.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import Session, aliased

from app.core.domain import Priority, StudyStatus
from app.core.tables import STUDY_ACQUIRED, STUDY_PRIORITY_RANK, Study, User
from app.services.outbox import as_utc
from app.services.short_cache import ShortCache

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


class WorklistRow(NamedTuple):
    """One study on the worklist (a named tuple: pages build fifty of these per request)."""

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


# One lower-cased text per study that a search looks in; migration 0005 indexes this
# exact expression with trigrams on PostgreSQL, so a search does not read every row.
_SPACE = literal_column("' '", String)
SEARCH_TEXT = func.lower(
    Study.accession_number
    + _SPACE
    + Study.dicom_patient_id
    + _SPACE
    + Study.dicom_patient_name
    + _SPACE
    + Study.study_description
)
_WORD_SEPARATORS = re.compile(r"[\s,^%_\\]+")


def search_words(text: str) -> list[str]:
    """The words of a search; each must occur in the study's text (any order, any field)."""
    return [w for w in _WORD_SEPARATORS.split(text.casefold()) if w]


def _status_in(statuses: tuple[StudyStatus, ...]) -> ColumnElement[bool]:
    """Statuses inline: they are fixed words, and the statement stays one cached text."""
    return Study.status.in_([literal_column(f"'{StudyStatus(s).value}'") for s in statuses])


@dataclass(frozen=True)
class _Shape:
    """What decides the SQL of a worklist query (values travel as parameters)."""

    statuses: tuple[StudyStatus, ...]
    scope: Scope
    priority: Priority | None
    claimed: Claimed
    words: int
    sort: Sort


def _conditions(shape: _Shape) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if shape.statuses:
        conditions.append(_status_in(shape.statuses))
    elif shape.scope is Scope.OPEN:
        conditions.append(_status_in(OPEN_STATUSES))
    elif shape.scope is Scope.SIGNED:
        conditions.append(_status_in(tuple(SIGNED)))
    if shape.priority is not None:
        conditions.append(Study.priority == literal_column(f"'{shape.priority.value}'"))
    now = bindparam("now", type_=Study.claim_expires_at.type)
    user_id = bindparam("user_id", type_=Integer)
    held = and_(Study.claimed_by_id.is_not(None), Study.claim_expires_at > now)
    if shape.claimed is Claimed.MINE:
        conditions.append(and_(held, Study.claimed_by_id == user_id))
    elif shape.claimed is Claimed.UNCLAIMED:
        conditions.append(~held | Study.claimed_by_id.is_(None))
    elif shape.claimed is Claimed.OTHERS:
        conditions.append(and_(held, Study.claimed_by_id != user_id))
    conditions.extend(SEARCH_TEXT.like(bindparam(f"word{i}")) for i in range(shape.words))
    return conditions


def _ordered(statement: Select[*tuple[Any, ...]], sort: Sort) -> Select[*tuple[Any, ...]]:
    """Priority, oldest and newest follow the indexes of migration 0005."""
    if sort is Sort.PRIORITY:
        return statement.order_by(STUDY_PRIORITY_RANK, STUDY_ACQUIRED, Study.id)
    if sort is Sort.OLDEST:
        return statement.order_by(STUDY_ACQUIRED, Study.id)
    if sort is Sort.NEWEST:
        return statement.order_by(STUDY_ACQUIRED.desc(), Study.id.desc())
    if sort is Sort.STATUS:
        return statement.order_by(Study.status, STUDY_PRIORITY_RANK, STUDY_ACQUIRED, Study.id)
    return statement.order_by(Study.accession_number, Study.id)


_READER = aliased(User)
_ROWS = select(
    Study.id,
    Study.status,
    Study.priority,
    STUDY_ACQUIRED.label("acquired"),
    Study.dicom_patient_name,
    Study.dicom_patient_id,
    Study.accession_number,
    Study.study_description,
    Study.claimed_by_id,
    _READER.display_name,
    Study.claim_expires_at,
).outerjoin(_READER, _READER.id == Study.claimed_by_id)


@lru_cache(maxsize=512)
def _statements(shape: _Shape) -> tuple[Select[*tuple[Any, ...]], Select[int]]:
    """The page and count statements of one shape, built once (building costs more than
    running them); SQLAlchemy then finds their compiled SQL in its cache."""
    conditions = _conditions(shape)
    page = (
        _ordered(_ROWS.where(*conditions), shape.sort)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return page, select(func.count()).select_from(Study).where(*conditions)


class TotalsCache(ShortCache[tuple[Any, ...], int]):
    """How many studies match a filter, remembered for a couple of seconds.

    Counting reads every matching index entry (thousands) while the page reads
    fifty; a worklist that refreshes itself asks the same count again and again.
    The rows are always read fresh; only the total shown above them may be a
    few seconds old.  Filters that depend on the reader or the clock (claimed
    by me / others) are always counted.
    """

    def __init__(self, ttl: float = 2.0) -> None:
        super().__init__(ttl, max_entries=1024)


def query_worklist(
    session: Session,
    query: WorklistQuery,
    *,
    user_id: int,
    now: datetime,
    totals: TotalsCache | None = None,
) -> WorklistPage:
    """One page in order, read along an index, and the number of matching studies."""
    words = search_words(query.search)
    shape = _Shape(
        statuses=query.statuses,
        scope=query.scope,
        priority=query.priority,
        claimed=query.claimed,
        words=len(words),
        sort=query.sort,
    )
    page_statement, count_statement = _statements(shape)
    params: dict[str, Any] = {f"word{i}": f"%{word}%" for i, word in enumerate(words)}
    if shape.claimed is not Claimed.ANY:
        params.update(now=now, user_id=user_id)
    # Core execution on the session's connection: no ORM entities to load.
    connection = session.connection()
    found = connection.execute(
        page_statement,
        {**params, "limit": query.page_size, "offset": (query.page - 1) * query.page_size},
    ).all()
    rows = []
    for (
        study_id,
        status,
        priority,
        acquired,
        patient_name,
        patient_id,
        accession,
        description,
        reader_id,
        reader_name,
        expires,
    ) in found:
        held = reader_id is not None and expires is not None and as_utc(expires) > now
        rows.append(
            WorklistRow(
                study_id,
                status,
                priority,
                as_utc(acquired),
                display_name(patient_name),
                patient_id,
                accession,
                description,
                reader_id if held else None,
                reader_name if held else None,
                as_utc(expires) if held else None,
            )
        )
    if query.page == 1 and len(found) < query.page_size:
        total = len(found)  # the whole result fits on the first page
    else:
        key = (shape, *words) if shape.claimed is Claimed.ANY and totals is not None else None
        cached = totals.get(key) if totals is not None and key is not None else None
        if cached is not None:
            total = max(cached, (query.page - 1) * query.page_size + len(found))
        else:
            total = int(connection.execute(count_statement, params).scalar() or 0)
            if totals is not None and key is not None:
                totals.put(key, total)
    return WorklistPage(rows=rows, total=total, query=query)
