"""The admin's reconciliation queue: link a study to its order or dismiss it (page and API).

Every listing is an access to patient data and is audited; every decision is
audited with the admin's note (see :mod:`app.services.reconciliation`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.core.tables import Study, User
from app.services import audit, reconciliation
from app.services.linking import ReconciliationError
from app.services.reconciliation import ReconciliationItem
from app.web.deps import AdminDep, ClientDep, DbDep, NowDep, SettingsDep, verify_csrf
from app.web.routers.worklist import page_context
from app.web.schemas import (
    OrderCandidatePublic,
    ReconciliationDismiss,
    ReconciliationItemPublic,
    ReconciliationLink,
    ReconciliationResult,
)
from app.web.templating import render

router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["admin"], dependencies=[Depends(verify_csrf)])
PAGE = "/admin/reconciliation"
CONFLICT = 409
DONE_MESSAGES = {"linked": "The study was linked to the order.", "dismissed": "Dismissed."}


def _audited_queue(db: DbDep, user: User, client: str | None) -> list[ReconciliationItem]:
    items = reconciliation.reconciliation_queue(db)
    audit.record(
        db,
        actor=user.username,
        action="reconciliation.view",
        object_type="reconciliation",
        user_id=user.id,
        client_address=client,
        detail={"studies": [item.study_id for item in items]},
    )
    db.commit()
    return items


def _page(
    request: Request,
    user: User,
    db: DbDep,
    settings: SettingsDep,
    client: str | None,
    *,
    message: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "reconciliation.html",
        {
            **page_context(request, user, settings, "reconciliation"),
            "items": _audited_queue(db, user, client),
            "message": message,
            "error": error,
        },
        status_code=status_code,
    )


@router.get(PAGE)
def reconciliation_page(
    request: Request,
    user: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    client: ClientDep,
    done: str = "",
) -> Response:
    return _page(request, user, db, settings, client, message=DONE_MESSAGES.get(done))


@router.post(PAGE + "/{study_id}/link", dependencies=[Depends(verify_csrf)])
def link_page(
    request: Request,
    study_id: int,
    user: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    client: ClientDep,
    now: NowDep,
    order_id: Annotated[int, Form()],
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    try:
        reconciliation.link_order(
            db,
            study_id=study_id,
            order_id=order_id,
            admin=user,
            note=note,
            now=now,
            client_address=client,
        )
    except ReconciliationError as exc:
        db.rollback()
        return _page(request, user, db, settings, client, error=str(exc), status_code=CONFLICT)
    db.commit()
    return RedirectResponse(PAGE + "?done=linked", status_code=303)


@router.post(PAGE + "/{study_id}/dismiss", dependencies=[Depends(verify_csrf)])
def dismiss_page(
    request: Request,
    study_id: int,
    user: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    client: ClientDep,
    now: NowDep,
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    try:
        reconciliation.dismiss(
            db, study_id=study_id, admin=user, note=note, now=now, client_address=client
        )
    except ReconciliationError as exc:
        db.rollback()
        return _page(request, user, db, settings, client, error=str(exc), status_code=CONFLICT)
    db.commit()
    return RedirectResponse(PAGE + "?done=dismissed", status_code=303)


def _result(study: Study) -> ReconciliationResult:
    return ReconciliationResult(
        study_id=study.id, status=study.status.value, order_id=study.order_id
    )


@api_router.get("/admin/reconciliation", response_model=list[ReconciliationItemPublic])
def reconciliation_queue(
    user: AdminDep, db: DbDep, client: ClientDep
) -> list[ReconciliationItemPublic]:
    """Studies that could not be linked to an EMR order, with candidate orders (admins)."""
    return [
        ReconciliationItemPublic(
            study_id=item.study_id,
            accession_number=item.accession_number,
            dicom_patient_id=item.dicom_patient_id,
            dicom_patient_name=item.dicom_patient_name,
            dicom_birth_date=item.dicom_birth_date,
            description=item.description,
            reason=item.reason,
            since=item.since,
            candidates=[
                OrderCandidatePublic(
                    order_id=c.order_id,
                    accession_number=c.accession_number,
                    accession_issuer=c.accession_issuer,
                    status=c.status.value,
                    procedure=c.procedure,
                    patient_name=c.patient_name,
                    patient_mrn=c.patient_mrn,
                    patient_birth_date=c.patient_birth_date,
                    why=c.why,
                    linkable=c.linkable,
                )
                for c in item.candidates
            ],
        )
        for item in _audited_queue(db, user, client)
    ]


@api_router.post("/admin/reconciliation/{study_id}/link", response_model=ReconciliationResult)
def link_api(
    study_id: int,
    body: ReconciliationLink,
    user: AdminDep,
    db: DbDep,
    client: ClientDep,
    now: NowDep,
) -> ReconciliationResult:
    """Link the study to the chosen order; the note says why they belong together."""
    try:
        study = reconciliation.link_order(
            db,
            study_id=study_id,
            order_id=body.order_id,
            admin=user,
            note=body.note,
            now=now,
            client_address=client,
        )
    except ReconciliationError as exc:
        db.rollback()
        raise HTTPException(status_code=CONFLICT, detail=str(exc)) from None
    db.commit()
    return _result(study)


@api_router.post("/admin/reconciliation/{study_id}/dismiss", response_model=ReconciliationResult)
def dismiss_api(
    study_id: int,
    body: ReconciliationDismiss,
    user: AdminDep,
    db: DbDep,
    client: ClientDep,
    now: NowDep,
) -> ReconciliationResult:
    """The study is not reported in Radscribe (it becomes failed, with the note)."""
    try:
        study = reconciliation.dismiss(
            db, study_id=study_id, admin=user, note=body.note, now=now, client_address=client
        )
    except ReconciliationError as exc:
        db.rollback()
        raise HTTPException(status_code=CONFLICT, detail=str(exc)) from None
    db.commit()
    return _result(study)
