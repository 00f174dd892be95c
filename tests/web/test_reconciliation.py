"""The admin's reconciliation queue: studies the linking put aside, linked or dismissed."""

from __future__ import annotations

from sqlalchemy import select

from app.core.domain import FlagKind, FlagStatus, Role, StudyStatus
from app.core.tables import AuditEvent, ReportFlag, Study
from app.services import linking


def _unlinkable(web, *, dicom_name: str) -> int:
    """A study whose DICOM name disagrees with its order's patient, linked as the DICOM side
    links it: it lands in reconciliation with a reason and an open flag."""
    study_id = web.seed.study(patient_name="DOE^JANE", linked=False)
    with web.factory() as session, session.begin():
        study = session.get(Study, study_id)
        study.dicom_patient_name = dicom_name
        result = linking.link_study(session, study)
    assert not result.linked and "patient name differs" in (result.reason or "")
    return study_id


def _state(web, study_id: int) -> tuple[Study, list[ReportFlag], list[AuditEvent]]:
    with web.factory() as session:
        study = session.get(Study, study_id)
        flags = list(
            session.scalars(
                select(ReportFlag).where(
                    ReportFlag.study_id == study_id, ReportFlag.kind == FlagKind.RECONCILIATION
                )
            )
        )
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.study_id == study_id)))
        session.expunge_all()
        return study, flags, events


def test_only_admins_see_the_queue_and_seeing_it_is_audited(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    web.seed.user("boss", Role.ADMIN)
    study_id = _unlinkable(web, dicom_name="DOE^JOHN")
    reader = web.client()
    web.login(reader, "rad")
    assert reader.get("/admin/reconciliation").status_code == 403
    assert reader.get("/api/admin/reconciliation").status_code == 403

    admin = web.client()
    web.login(admin, "boss")
    page = admin.get("/admin/reconciliation")
    assert page.status_code == 200
    assert "patient name differs" in page.text and "DOE^JOHN" in page.text
    assert f'action="/admin/reconciliation/{study_id}/link"' in page.text
    items = admin.get("/api/admin/reconciliation").json()
    assert [i["study_id"] for i in items] == [study_id]
    [candidate] = items[0]["candidates"]
    assert candidate["why"] == "same accession" and candidate["linkable"]
    assert candidate["patient_name"] == "DOE^JANE"
    with web.factory() as session:
        views = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "reconciliation.view")
        ).all()
    assert len(views) == 2 and all(v.detail == {"studies": [study_id]} for v in views)
    assert all(v.actor == "boss" and v.client_address == "testclient" for v in views)


def test_an_admin_links_the_order_with_a_note(web) -> None:
    web.seed.user("boss", Role.ADMIN)
    study_id = _unlinkable(web, dicom_name="DOE^JANET")
    admin = web.client()
    token = web.login(admin, "boss")
    order_id = admin.get("/api/admin/reconciliation").json()[0]["candidates"][0]["order_id"]
    form = {"order_id": str(order_id), "note": "Same person: name misspelt at the scanner"}
    assert admin.post(f"/admin/reconciliation/{study_id}/link", data=form).status_code == 403
    unexplained = admin.post(
        f"/admin/reconciliation/{study_id}/link",
        data={"order_id": str(order_id), "note": " ", "csrf_token": token},
    )
    assert unexplained.status_code == 409 and "say why" in unexplained.text
    assert _state(web, study_id)[0].status is StudyStatus.NEEDS_RECONCILIATION

    done = admin.post(f"/admin/reconciliation/{study_id}/link", data={**form, "csrf_token": token})
    assert (
        done.status_code == 303 and done.headers["location"] == "/admin/reconciliation?done=linked"
    )
    study, flags, events = _state(web, study_id)
    assert study.status is StudyStatus.DRAFT_READY  # where it was before reconciliation
    assert study.order_id == order_id and study.reconciliation_reason is None
    assert [f.status for f in flags] == [FlagStatus.ACCEPTED]
    linked = [e for e in events if e.action == "reconciliation.link"]
    assert linked and linked[0].actor == "boss" and linked[0].client_address == "testclient"
    assert any(e.action == "study.reconcile" and e.detail["note"] == form["note"] for e in events)
    again = admin.post(
        f"/api/admin/reconciliation/{study_id}/link",
        json={"order_id": order_id, "note": "twice"},
        headers={"X-CSRF-Token": token},
    )
    assert again.status_code == 409 and "does not need reconciliation" in again.json()["detail"]
    assert "Nothing waits" in admin.get("/admin/reconciliation").text


def test_an_admin_dismisses_a_study_through_the_api(web) -> None:
    web.seed.user("boss", Role.ADMIN)
    study_id = _unlinkable(web, dicom_name="PHANTOM^QA")
    admin = web.client()
    headers = {"X-CSRF-Token": web.login(admin, "boss")}
    url = f"/api/admin/reconciliation/{study_id}/dismiss"
    assert admin.post(url, json={"note": "QA phantom"}).status_code == 403  # no CSRF header
    assert admin.post(url, json={"note": ""}, headers=headers).status_code == 422
    done = admin.post(url, json={"note": "QA phantom sent to the wrong AE"}, headers=headers)
    assert done.status_code == 200, done.text
    assert done.json() == {"study_id": study_id, "status": "failed", "order_id": None}
    study, flags, events = _state(web, study_id)
    assert (
        study.failure_reason == "reconciliation dismissed by boss: QA phantom sent to the wrong AE"
    )
    assert [f.status for f in flags] == [FlagStatus.DISMISSED]
    [dismissed] = [e for e in events if e.action == "reconciliation.dismiss"]
    assert "patient name differs" in dismissed.detail["reason"]
    assert admin.post(url, json={"note": "again"}, headers=headers).status_code == 409
