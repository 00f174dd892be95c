"""Exports are audited: a report signed in the browser and sent by the real outbox sender
writes "report.export" events (who: the system, what: which report, result)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from app.core.domain import ReportKind, Role
from app.core.net import free_port
from app.core.settings import Settings
from app.core.tables import AuditEvent, Report, ReportVersion
from app.emr.runtime import Hl7Component
from tests.emr.conftest import TxHl7Receiver, hl7_settings, wait_for

TIMEOUT = 30.0


@contextmanager
def sender(web, port: int) -> Iterator[None]:
    settings: Settings = hl7_settings(
        web.settings,
        emr_hl7_host="127.0.0.1",
        emr_hl7_port=port,
        hl7_ack_timeout_seconds=2.0,
        hl7_retry_base_seconds=0.05,
        hl7_retry_max_seconds=0.2,
        hl7_outbox_poll_seconds=0.05,
        hl7_lease_seconds=2.0,
    )
    component = Hl7Component(settings, web.factory, listen=False)
    component.start()
    try:
        yield
    finally:
        component.stop()


def _exports(web, study_id: int) -> list[AuditEvent]:
    with web.factory() as session:
        events = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "report.export", AuditEvent.study_id == study_id)
                .order_by(AuditEvent.id)
            )
        )
        session.expunge_all()
        return events


def _signed_study(web) -> tuple[int, int]:
    web.seed.user("rad", Role.RADIOLOGIST)
    study = web.seed.study()
    web.seed.draft(study, uncertain=None)
    client = web.client()
    headers = {"X-CSRF-Token": web.login(client, "rad")}
    assert client.post(f"/api/studies/{study}/claim", headers=headers).status_code == 200
    body = {"kind": "final", "sections": {"impression": "Right upper lobe nodule."}}
    signed = client.post(f"/api/studies/{study}/sign", json=body, headers=headers)
    assert signed.status_code == 200, signed.text
    with web.factory() as session:
        version_id = session.scalars(
            select(ReportVersion.id)
            .join(Report, Report.id == ReportVersion.report_id)
            .where(Report.study_id == study, ReportVersion.kind == ReportKind.FINAL)
        ).one()
    return study, version_id


def test_an_unreachable_emr_then_an_acknowledgement_are_both_audited(web, tmp_path: Path) -> None:
    study, version_id = _signed_study(web)
    assert _exports(web, study) == []  # signing queues; nothing was sent yet

    with sender(web, free_port()):  # nobody listens there: the attempt fails
        wait_for(lambda: _exports(web, study), timeout=TIMEOUT, what="failed export audited")
    failed = _exports(web, study)[0]
    assert failed.actor == "system" and failed.user_id is None
    assert failed.object_type == "report_version" and failed.object_id == str(version_id)
    assert failed.detail is not None and failed.detail["outcome"] == "retrying"
    assert "connection to 127.0.0.1" in failed.detail["error"]

    folder = tmp_path / "emr"
    folder.mkdir()
    receiver = TxHl7Receiver(folder)
    receiver.start()
    try:
        with sender(web, receiver.port):
            wait_for(
                lambda: _exports(web, study)[-1].detail["outcome"] == "acknowledged",
                timeout=TIMEOUT,
                what="acknowledged export audited",
            )
    finally:
        receiver.stop()
    done = _exports(web, study)[-1]
    assert done.detail is not None
    assert done.detail["ack_code"] == "AA" and done.detail["message_type"] == "ORU^R01"
    assert done.detail["control_id"] in receiver.received_control_ids()
    assert done.detail["attempt"] == len(_exports(web, study))  # one event per attempt
