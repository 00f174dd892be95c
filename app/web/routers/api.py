"""The JSON API under /api: the same services as the pages, Public schemas out.

Every call needs the session cookie; unsafe methods need the X-CSRF-Token
header.  Worklist search text goes in a POST body (``/worklist/_search``), as
FHIR does for searches with patient data.
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, HTTPException, Request

from app.core.domain import ReportKind
from app.core.tables import Study
from app.services import audit
from app.services.audit_query import query_audit
from app.services.claims import ClaimError, claim, release
from app.services.outbox import as_utc
from app.services.report_actions import (
    ActionRefused,
    Actor,
    resolve_study_flag,
    save_report,
    sign_study,
)
from app.services.report_editing import versions
from app.services.report_history import diff_versions
from app.services.slices import WindowPreset
from app.services.turnaround import agreement, turnaround_by_day
from app.services.worklist import WorklistError, WorklistPage, WorklistQuery
from app.web.deps import AdminDep, ClientDep, DbDep, NowDep, SettingsDep, UserDep, verify_csrf
from app.web.routers.admin import STATS_DAYS, audit_filter
from app.web.routers.studies import get_study
from app.web.routers.worklist import audited_worklist, build_query
from app.web.schemas import (
    AgreementPublic,
    AuditEventPublic,
    AuditPagePublic,
    DeliveryPublic,
    DictationPublic,
    DiffLinePublic,
    EditorSectionPublic,
    FlagPublic,
    FlagResolution,
    HolderPublic,
    KeySlicePublic,
    OrderPublic,
    ReportSave,
    SignRequest,
    SignResult,
    StudyDetailPublic,
    StudyPublic,
    TurnaroundDayPublic,
    UserPublic,
    VersionPublic,
    WorklistPagePublic,
    WorklistSearch,
)
from app.web.study_view import StudyView, build_study_view

router = APIRouter(tags=["api"], dependencies=[Depends(verify_csrf)])
CONFLICT = 409


def _worklist_public(page: WorklistPage, now: NowDep) -> WorklistPagePublic:
    """Validated in one pass (one call into pydantic-core, not one per row)."""
    return WorklistPagePublic.model_validate(
        {
            "rows": [
                {
                    "study_id": r.study_id,
                    "status": r.status.value,
                    "status_label": r.status_label,
                    "priority": r.priority.value,
                    "acquired_at": r.acquired_at,
                    "waiting_minutes": max(0, int((now - r.acquired_at).total_seconds() // 60)),
                    "patient_name": r.patient_name,
                    "patient_id": r.patient_id,
                    "accession_number": r.accession_number,
                    "description": r.description,
                    "reader_id": r.reader_id,
                    "reader_name": r.reader_name,
                    "claim_expires_at": r.claim_expires_at,
                }
                for r in page.rows
            ],
            "total": page.total,
            "page": page.query.page,
            "pages": page.pages,
            "page_size": page.query.page_size,
        }
    )


def _query(search: WorklistSearch) -> WorklistQuery:
    try:
        return build_query(**search.model_dump())
    except WorklistError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@router.get("/me", response_model=UserPublic)
def me(user: UserDep) -> UserPublic:
    """The logged-in user (also the page's keep-alive)."""
    return UserPublic(
        id=user.id, username=user.username, display_name=user.display_name, role=user.role.value
    )


@router.get("/worklist", response_model=WorklistPagePublic)
async def worklist(
    request: Request,
    user: UserDep,
    db: DbDep,
    now: NowDep,
    client: ClientDep,
    scope: str = "open",
    status: str = "",
    priority: str = "",
    claimed: str = "any",
    sort: str = "priority",
    page: int = 1,
    page_size: int = 50,
) -> WorklistPagePublic:
    """The worklist with filters that carry no patient data (search: POST _search)."""
    query = _query(
        WorklistSearch(
            scope=scope,
            status=[s for s in status.split(",") if s],
            priority=priority,
            claimed=claimed,
            sort=sort,
            page=max(1, page),
            page_size=min(max(1, page_size), 200),
        )
    )
    result = await audited_worklist(request, db, user, query, now=now, client=client)
    return _worklist_public(result, now)


@router.post("/worklist/_search", response_model=WorklistPagePublic)
async def worklist_search(
    request: Request,
    body: WorklistSearch,
    user: UserDep,
    db: DbDep,
    now: NowDep,
    client: ClientDep,
) -> WorklistPagePublic:
    query = _query(body)
    result = await audited_worklist(request, db, user, query, now=now, client=client)
    return _worklist_public(result, now)


def _study_public(study: Study) -> StudyPublic:
    return StudyPublic(
        id=study.id,
        study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number,
        study_description=study.study_description,
        status=study.status.value,
        priority=study.priority.value,
        acquired_at=as_utc(study.acquired_at) if study.acquired_at else None,
        patient_name=study.dicom_patient_name.replace("^", ", ", 1).replace("^", " "),
        patient_id=study.dicom_patient_id,
        reconciliation_reason=study.reconciliation_reason,
        failure_reason=study.failure_reason,
    )


def _detail(view: StudyView) -> StudyDetailPublic:
    order = view.order
    return StudyDetailPublic(
        study=_study_public(view.study),
        holder=HolderPublic.model_validate(view.holder) if view.holder else None,
        held_by_me=view.held_by_me,
        order=OrderPublic(
            accession_number=order.accession_number,
            procedure_text=order.procedure_text,
            reason_for_exam=order.reason_for_exam,
            clinical_history=order.clinical_history,
            ordering_provider=order.ordering_provider,
            status=order.status.value,
        )
        if order
        else None,
        flags=[
            FlagPublic(
                id=f.id, kind=f.kind.value, finding=f.finding, message=f.message, status=f.status
            )
            for f in view.flags
        ],
        open_flags=view.open_flags,
        sign_blocked=view.sign_blocked,
        signed_final=view.signed_final,
        editor=[EditorSectionPublic.model_validate(s) for s in view.editor],
        findings=[KeySlicePublic.model_validate(k) for k in view.findings],
        modality_weights=dict(view.draft.modality_weights) if view.draft else {},
        model_version=view.draft.model_version if view.draft else None,
        versions=[
            VersionPublic(
                version_number=h.version.version_number,
                kind=h.version.kind.value,
                ai_generated=h.version.ai_generated,
                author=h.author,
                signer=h.signer,
                cosigner=h.cosigner,
                created_at=as_utc(h.version.created_at),
                signed_at=as_utc(h.version.signed_at) if h.version.signed_at else None,
                model_version=h.version.model_version,
                text=h.version.rendered_text,
            )
            for h in view.history
        ],
        deliveries=[
            DeliveryPublic(
                control_id=m.control_id,
                message_type=m.message_type,
                status=m.status.value,
                attempts=m.attempts,
                ack_code=m.ack_code,
                last_error=m.last_error,
                created_at=as_utc(m.created_at),
                acked_at=as_utc(m.acked_at) if m.acked_at else None,
            )
            for m in view.deliveries
        ],
        dictations=[
            DictationPublic(
                id=d.id,
                status=d.status.value,
                created_at=as_utc(d.created_at),
                duration_seconds=d.duration_seconds,
                transcript_text=d.transcript_text,
                sections=d.sections,
                error=d.error,
            )
            for d in view.dictations
        ],
        slice_count=len(view.slices.slices) if view.slices else 0,
        windows=[w.value for w in WindowPreset],
        viewer_url=view.viewer_url,
    )


@router.get("/studies/{study_id}", response_model=StudyDetailPublic)
def study_detail(
    study_id: int,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> StudyDetailPublic:
    """The study page as data (slices as PNG: /studies/{id}/slices/{index}.png?window=)."""
    study = get_study(db, study_id)
    detail = _detail(build_study_view(db, study, user=user, settings=settings, now=now))
    audit.record_study_view(db, user=user, study_id=study.id, client_address=client, via="api")
    db.commit()
    return detail


@router.post("/studies/{study_id}/claim", response_model=HolderPublic)
def claim_study(
    study_id: int,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> HolderPublic:
    """Claim (or extend) the study for the caller; 409 names who holds it."""
    get_study(db, study_id)
    try:
        held = claim(
            db,
            study_id=study_id,
            user=user,
            now=now,
            minutes=settings.claim_minutes,
            client_address=client,
        )
    except ClaimError as exc:
        db.rollback()
        raise HTTPException(status_code=CONFLICT, detail=str(exc)) from None
    db.commit()
    return HolderPublic.model_validate(held)


@router.delete("/studies/{study_id}/claim", status_code=204)
def release_study(study_id: int, user: UserDep, db: DbDep, client: ClientDep) -> None:
    release(db, study_id=study_id, user=user, client_address=client)
    db.commit()


@router.put("/studies/{study_id}/report", response_model=list[EditorSectionPublic])
def save(
    study_id: int,
    body: ReportSave,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> list[EditorSectionPublic]:
    """Save the editor's sections as a working copy (needs the caller's claim)."""
    study = get_study(db, study_id)
    try:
        save_report(
            db,
            study=study,
            actor=Actor(user=user, now=now, client_address=client),
            texts=body.sections,
            settings=settings,
        )
    except ActionRefused as exc:
        db.rollback()
        raise HTTPException(status_code=CONFLICT, detail=str(exc)) from None
    db.commit()
    view = build_study_view(db, study, user=user, settings=settings, now=now)
    return [EditorSectionPublic.model_validate(s) for s in view.editor]


@router.post("/studies/{study_id}/sign", response_model=SignResult)
def sign(
    study_id: int,
    body: SignRequest,
    user: UserDep,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    client: ClientDep,
) -> SignResult:
    """Sign preliminary, final or addendum; refused (409, with the reason) while flags are open."""
    study = get_study(db, study_id)
    if body.kind is ReportKind.DRAFT:
        raise HTTPException(status_code=422, detail="sign a preliminary, final or addendum")
    try:
        signed = sign_study(
            db,
            study=study,
            actor=Actor(user=user, now=now, client_address=client),
            kind=body.kind,
            settings=settings,
            texts=body.sections,
            addendum=body.addendum,
            cosign=body.cosign,
        )
    except ActionRefused as exc:
        db.rollback()
        raise HTTPException(status_code=CONFLICT, detail=str(exc)) from None
    db.commit()
    return SignResult(
        version_number=signed.version.version_number,
        kind=signed.version.kind.value,
        outbox_control_id=signed.outbox_message.control_id if signed.outbox_message else None,
    )


@router.post("/studies/{study_id}/flags/{flag_id}", response_model=FlagPublic)
def resolve(
    study_id: int,
    flag_id: int,
    body: FlagResolution,
    user: UserDep,
    db: DbDep,
    now: NowDep,
    client: ClientDep,
) -> FlagPublic:
    study = get_study(db, study_id)
    try:
        flag = resolve_study_flag(
            db,
            study=study,
            actor=Actor(user=user, now=now, client_address=client),
            flag_id=flag_id,
            resolution=body.resolution,
        )
    except ActionRefused as exc:
        db.rollback()
        raise HTTPException(status_code=CONFLICT, detail=str(exc)) from None
    db.commit()
    return FlagPublic(
        id=flag.id,
        kind=flag.kind.value,
        finding=flag.finding,
        message=flag.message,
        status=flag.status.value,
    )


@router.get("/studies/{study_id}/versions/{number}/diff", response_model=list[DiffLinePublic])
def version_diff(study_id: int, number: int, user: UserDep, db: DbDep) -> list[DiffLinePublic]:
    """Differences of version ``number`` against the one before it."""
    get_study(db, study_id)
    all_versions = versions(db, study_id)
    index = next((i for i, v in enumerate(all_versions) if v.version_number == number), None)
    if index is None:
        raise HTTPException(status_code=404, detail=f"no version {number}")
    older = all_versions[index - 1] if index else None
    return [DiffLinePublic.model_validate(d) for d in diff_versions(older, all_versions[index])]


@router.get("/audit", response_model=AuditPagePublic)
def audit_events(
    user: AdminDep,
    db: DbDep,
    actor: str = "",
    action: str = "",
    study_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    page: int = 1,
) -> AuditPagePublic:
    """The audit trail, newest first (admins only)."""
    result = query_audit(db, audit_filter(actor, action, study_id, since, until, page))
    return AuditPagePublic(
        events=[AuditEventPublic.model_validate(e) for e in result.events],
        total=result.total,
        page=result.filter.page,
        pages=result.pages,
    )


@router.get("/stats/turnaround", response_model=list[TurnaroundDayPublic])
def turnaround(user: UserDep, db: DbDep, now: NowDep) -> list[TurnaroundDayPublic]:
    return [
        TurnaroundDayPublic.model_validate(d)
        for d in turnaround_by_day(db, now=now, days=STATS_DAYS)
    ]


@router.get("/stats/agreement", response_model=list[AgreementPublic])
def agreement_stats(user: UserDep, db: DbDep, now: NowDep) -> list[AgreementPublic]:
    return [AgreementPublic.model_validate(a) for a in agreement(db, now=now, days=STATS_DAYS)]
