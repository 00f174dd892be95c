"""The JSON API and the services behind it, through FastAPI's test client."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image
from sqlalchemy import select

from app.core.db import transaction
from app.core.domain import OutboxStatus, Priority, Role, StudyStatus
from app.core.tables import AuditEvent, OutboxMessage, Study, StudyStatusChange, User
from app.services.claims import ClaimError, claim
from app.services.users import create_user
from app.web.deps import get_now


def _reader(web, username: str = "rad", role: Role = Role.RADIOLOGIST):
    web.seed.user(username, role)
    client = web.client()
    token = web.login(client, username)
    return client, {"X-CSRF-Token": token}


def test_worklist_filters_search_sort_and_pages(web) -> None:
    client, headers = _reader(web)
    stat = web.seed.study(priority=Priority.STAT, acquired_minutes_ago=5, patient_name="ALPHA^ANN")
    old = web.seed.study(acquired_minutes_ago=300, patient_name="BRAVO^BEN")
    new = web.seed.study(acquired_minutes_ago=10, patient_name="CHARLIE^CAT")
    final = web.seed.study(status=StudyStatus.FINAL, patient_name="DELTA^DAN")
    failed = web.seed.study(status=StudyStatus.FAILED, patient_name="ECHO^EVE")

    rows = client.get("/api/worklist").json()["rows"]
    # STAT first, then the longest waiting (the failed one was acquired 30 min ago)
    assert [r["study_id"] for r in rows] == [stat, old, failed, new]
    assert rows[0]["waiting_minutes"] >= 4 and rows[0]["patient_name"] == "ALPHA, ANN"
    newest = client.get("/api/worklist?sort=newest").json()["rows"]
    assert newest[0]["study_id"] == stat and newest[-1]["study_id"] == old
    assert [r["study_id"] for r in client.get("/api/worklist?scope=signed").json()["rows"]] == [
        final
    ]
    only = client.get("/api/worklist?status=failed").json()["rows"]
    assert [r["study_id"] for r in only] == [failed]
    assert client.get("/api/worklist?priority=stat").json()["total"] == 1
    assert client.get("/api/worklist?status=nonsense").status_code == 422

    found = client.post("/api/worklist/_search", json={"search": "charl"}, headers=headers)
    assert [r["study_id"] for r in found.json()["rows"]] == [new]
    by_acc = client.post(
        "/api/worklist/_search", json={"search": f"ACC{old:05d}", "scope": "all"}, headers=headers
    )
    assert [r["study_id"] for r in by_acc.json()["rows"]] == [old]

    paged = client.get("/api/worklist?page_size=2&page=2").json()
    assert paged["total"] == 4 and paged["pages"] == 2 and len(paged["rows"]) == 2

    assert client.post(f"/api/studies/{new}/claim", headers=headers).status_code == 200
    mine = client.get("/api/worklist?claimed=mine").json()["rows"]
    assert [r["study_id"] for r in mine] == [new]
    assert client.get("/api/worklist?claimed=unclaimed").json()["total"] == 3
    with transaction(web.factory) as session:
        count = session.query(AuditEvent).filter_by(action="worklist.view").count()
    assert count >= 8  # every worklist view is audited


def test_concurrent_claims_exactly_one_wins(session_factory) -> None:
    """On SQLite and PostgreSQL: eight readers claim at once; one gets it."""
    with transaction(session_factory) as session:
        users = [
            create_user(session, username=f"r{i}", role=Role.RADIOLOGIST, password="x" * 12).id
            for i in range(8)
        ]
        study = Study(study_instance_uid="1.2.3.4", status=StudyStatus.DRAFT_READY)
        session.add(study)
        session.flush()
        study_id = study.id
    now = datetime.now(UTC)
    barrier = threading.Barrier(len(users))
    winners: list[int] = []
    losers: list[str] = []

    def attempt(user_id: int) -> None:
        with session_factory() as session:
            try:
                with session.begin():
                    user = session.get_one(User, user_id)
                    barrier.wait()
                    claim(session, study_id=study_id, user=user, now=now, minutes=20)
                winners.append(user_id)
            except ClaimError as exc:
                losers.append(str(exc))

    threads = [threading.Thread(target=attempt, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(winners) == 1 and len(losers) == len(users) - 1
    assert all("is reading this study" in message for message in losers)
    with session_factory() as session:
        stored = session.get_one(Study, study_id)
        assert stored.claimed_by_id == winners[0]
        assert stored.status is StudyStatus.IN_REVIEW
        changes = session.scalars(select(StudyStatusChange).filter_by(study_id=study_id)).all()
        assert [c.to_status for c in changes] == [StudyStatus.IN_REVIEW]


def test_an_expired_claim_can_be_taken_over(web) -> None:
    one, h1 = _reader(web, "first")
    two, h2 = _reader(web, "second")
    study = web.seed.study()
    assert one.post(f"/api/studies/{study}/claim", headers=h1).status_code == 200
    later = datetime.now(UTC) + timedelta(minutes=web.settings.claim_minutes + 1)
    web.app.dependency_overrides[get_now] = lambda: later
    taken = two.post(f"/api/studies/{study}/claim", headers=h2)
    assert taken.status_code == 200 and taken.json()["name"] == "Dr Second"


def test_signing_is_refused_while_a_flag_is_open_then_hands_over_to_the_emr(web) -> None:
    client, headers = _reader(web)
    study = web.seed.study()
    web.seed.draft(study)
    assert client.post(f"/api/studies/{study}/claim", headers=headers).status_code == 200
    detail = client.get(f"/api/studies/{study}").json()
    assert detail["held_by_me"] and detail["open_flags"] == 1
    assert detail["modality_weights"] == {"image": 0.7, "text": 0.2, "dictation": 0.1}
    assert {f["finding"]: f["probability"] for f in detail["findings"]}["Lung nodule"] == 0.91
    editor = {s["key"]: s["text"] for s in detail["editor"]}
    assert "Lung nodule" in editor["lungs"] and "1. Lung nodule" in editor["impression"]

    editor["impression"] = "Right upper lobe nodule, 8 mm."
    sign = {"kind": "final", "sections": editor}
    refused = client.post(f"/api/studies/{study}/sign", json=sign, headers=headers)
    assert refused.status_code == 409 and "open flag" in refused.json()["detail"]

    flag = detail["flags"][0]
    dismissed = client.post(
        f"/api/studies/{study}/flags/{flag['id']}",
        json={"resolution": "dismissed"},
        headers=headers,
    )
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    again = client.post(
        f"/api/studies/{study}/flags/{flag['id']}", json={"resolution": "accepted"}, headers=headers
    )
    assert again.status_code == 409

    saved = client.put(f"/api/studies/{study}/report", json={"sections": editor}, headers=headers)
    assert saved.status_code == 200
    assert {s["key"]: s["text"] for s in saved.json()}["impression"] == editor["impression"]
    signed = client.post(f"/api/studies/{study}/sign", json=sign, headers=headers)
    assert signed.status_code == 200, signed.text
    assert signed.json()["kind"] == "final" and signed.json()["outbox_control_id"]

    detail = client.get(f"/api/studies/{study}").json()
    assert detail["study"]["status"] == "final" and detail["signed_final"]
    assert detail["holder"] is None  # signing releases the claim
    assert detail["deliveries"][0]["status"] == "pending"
    assert [v["kind"] for v in detail["versions"]] == ["final", "draft", "draft"]
    diff = client.get(f"/api/studies/{study}/versions/2/diff").json()
    assert {"tag": "added", "text": "Right upper lobe nodule, 8 mm."} in diff
    with transaction(web.factory) as session:
        message = session.scalars(select(OutboxMessage)).one()
        assert message.status is OutboxStatus.PENDING and message.message_type == "ORU^R01"
        statuses = [
            c.to_status
            for c in session.scalars(
                select(StudyStatusChange).filter_by(study_id=study).order_by(StudyStatusChange.id)
            )
        ]
    assert statuses[-2:] == [StudyStatus.IN_REVIEW, StudyStatus.FINAL]

    # after final only an addendum; the editor cannot overwrite the final
    assert client.post(f"/api/studies/{study}/claim", headers=headers).status_code == 200
    again = client.post(f"/api/studies/{study}/sign", json=sign, headers=headers)
    assert again.status_code == 409 and "addendum" in again.json()["detail"]
    addendum = client.post(
        f"/api/studies/{study}/sign",
        json={"kind": "addendum", "addendum": "Compared with outside CT: stable."},
        headers=headers,
    )
    assert addendum.status_code == 200
    assert client.get(f"/api/studies/{study}").json()["study"]["status"] == "addended"


def test_a_study_without_an_order_cannot_be_signed_and_says_why(web) -> None:
    client, headers = _reader(web)
    study = web.seed.study(linked=False)
    client.post(f"/api/studies/{study}/claim", headers=headers)
    detail = client.get(f"/api/studies/{study}").json()
    assert "not linked to an EMR order" in detail["sign_blocked"]
    refused = client.post(
        f"/api/studies/{study}/sign",
        json={"kind": "final", "sections": {"impression": "Normal."}},
        headers=headers,
    )
    assert refused.status_code == 409 and "order" in refused.json()["detail"]


def test_slices_are_ordered_by_position_and_windowed(web) -> None:
    client, _ = _reader(web)
    study = web.seed.study(slices=6)
    assert client.get(f"/api/studies/{study}").json()["slice_count"] == 6

    def centre(index: int, window: str) -> int:
        response = client.get(f"/studies/{study}/slices/{index}.png?window={window}")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert "private" in response.headers["cache-control"]
        pixels = np.asarray(Image.open(io.BytesIO(response.content)))
        return int(pixels[32, 32])

    # the seeded positions put instance k at ((7k) mod 6) * 2.5 mm; intensity grows with k
    by_position = [centre(i, "mediastinal") for i in range(6)]
    instance_order = [(7 * k) % 6 for k in range(6)]
    expected = [40 + 60 * instance_order.index(p) for p in range(6)]
    low, width = 50 - 175, 350
    assert by_position == [int(np.clip((hu - low) * 255 / width, 0, 255)) for hu in expected]
    assert centre(0, "lung") != centre(0, "bone")
    assert client.get(f"/studies/{study}/slices/6.png").status_code == 404
    assert client.get(f"/studies/{study}/slices/0.png?window=soft").status_code == 422


def test_turnaround_and_agreement(web) -> None:
    client, headers = _reader(web)
    times = []
    for minutes, impression in ((30, "Lung nodule."), (90, "No nodule. Pleural effusion.")):
        study = web.seed.study(acquired_minutes_ago=minutes)
        web.seed.draft(study, uncertain=None)
        client.post(f"/api/studies/{study}/claim", headers=headers)
        signed = client.post(
            f"/api/studies/{study}/sign",
            json={"kind": "final", "sections": {"impression": impression}},
            headers=headers,
        )
        assert signed.status_code == 200, signed.text
        times.append(minutes)
    days = client.get("/api/stats/turnaround").json()
    assert len(days) == 1 and days[0]["count"] == 2
    assert 59 <= days[0]["median_minutes"] <= 61  # median of ~30 and ~90
    assert 83 <= days[0]["p90_minutes"] <= 85
    rows = {r["finding"]: r for r in client.get("/api/stats/agreement").json()}
    nodule = rows["Lung nodule"]
    assert (nodule["kept"], nodule["removed"], nodule["added"]) == (1, 1, 0)
    assert rows["Pleural effusion"]["added"] == 1
    assert nodule["model_version"] == "radscribe-test-1"
    page = client.get("/stats")
    assert page.status_code == 200 and "turnaround-chart" in page.text


def test_audit_is_for_admins(web) -> None:
    client, _ = _reader(web)
    assert client.get("/api/audit").status_code == 403
    assert client.get("/admin/audit").status_code == 403
    admin, _ = _reader(web, "boss", Role.ADMIN)
    events = admin.get("/api/audit?action=auth.login").json()
    assert events["total"] == 2 and {e["actor"] for e in events["events"]} == {"rad", "boss"}
    assert admin.get("/admin/audit?action=auth.login").status_code == 200
    # admins read but neither claim nor sign
    study = web.seed.study()
    assert admin.get(f"/api/studies/{study}").status_code == 200
    token = admin.get("/worklist")
    assert token.status_code == 200


def test_openapi_lists_the_api(web) -> None:
    client, _ = _reader(web)
    spec = client.get("/openapi.json").json()
    assert (
        "/api/worklist/_search" in spec["paths"] and "/api/studies/{study_id}/sign" in spec["paths"]
    )
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "https://" not in docs.text and "/docs/assets/swagger-ui-bundle.js" in docs.text
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert client.get("/healthz").text == "ok"
    assert "radscribe_http_requests_total" in client.get("/metrics").text


def test_dictation_upload_needs_the_claim_and_real_audio(web, dictation_wav) -> None:
    client, headers = _reader(web)
    study = web.seed.study()
    audio = {"audio": ("dictation.wav", dictation_wav.read_bytes(), "audio/wav")}
    refused = client.post(f"/api/studies/{study}/dictations", files=audio, headers=headers)
    assert refused.status_code == 409  # not claimed
    client.post(f"/api/studies/{study}/claim", headers=headers)
    stored = client.post(f"/api/studies/{study}/dictations", files=audio, headers=headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["status"] == "pending" and stored.json()["duration_seconds"] > 1
    noise = {"audio": ("x.wav", b"RIFF not really audio", "audio/wav")}
    bad = client.post(f"/api/studies/{study}/dictations", files=noise, headers=headers)
    assert bad.status_code == 422
    listed = client.get(f"/api/studies/{study}/dictations").json()
    assert [d["id"] for d in listed] == [stored.json()["id"]]
    no_token = client.post(f"/api/studies/{study}/dictations", files=audio)
    assert no_token.status_code == 403
