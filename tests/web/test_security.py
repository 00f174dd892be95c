"""Security of the web app: sessions everywhere, CSRF, roles, claims, idle log-off, slow-down,
no patient data in URLs or logs."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.routing import APIRoute

from app.core.domain import Role
from app.web.deps import get_now
from app.web.routers import admin, api, dictations, reconciliation, reports, studies, worklist
from app.web.sessions import SESSION_COOKIE

OPEN_PATHS = {"/healthz", "/metrics", "/login"}


def _protected_routes() -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = [("GET", "/docs"), ("GET", "/openapi.json")]
    for module, prefix in (
        (worklist, ""),
        (studies, ""),
        (reports, ""),
        (dictations, ""),
        (admin, ""),
        (reconciliation, ""),
        (api, "/api"),
    ):
        for route in [*module.router.routes, *getattr(module, "api_router", module.router).routes]:
            assert isinstance(route, APIRoute)
            path = prefix + re.sub(r"\{[^}]+\}", "1", route.path)
            routes.extend((method, path) for method in sorted(route.methods))
    return routes


def test_every_page_and_api_call_needs_a_session(web) -> None:
    client = web.client()
    routes = _protected_routes()
    assert len(routes) > 25
    for method, path in routes:
        response = client.request(method, path)
        if path.startswith("/api/") or path == "/openapi.json":
            assert response.status_code == 401, (method, path, response.status_code)
        else:
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next=")
    for path in OPEN_PATHS:
        assert client.get(path).status_code == 200, path
    # a forged cookie is no session either
    client.cookies.set(SESSION_COOKIE, "eyJzaWQiOiJ4In0.forged")
    assert client.get("/api/me").status_code == 401


def test_csrf_token_is_required_on_every_unsafe_request(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    study = web.seed.study()
    client = web.client()
    token = web.login(client, "rad")
    assert client.post(f"/studies/{study}/claim").status_code == 403
    assert client.post(f"/studies/{study}/claim", data={"csrf_token": "x" * 43}).status_code == 403
    assert client.post(f"/api/studies/{study}/claim").status_code == 403
    assert client.post("/logout").status_code == 403
    ok = client.post(f"/api/studies/{study}/claim", headers={"X-CSRF-Token": token})
    assert ok.status_code == 200, ok.text
    assert client.post(f"/studies/{study}/claim", data={"csrf_token": token}).status_code == 303
    # the login form has its own token, bound to a pre-session cookie
    fresh = web.client()
    refused = fresh.post("/login", data={"username": "rad", "password": "correct horse battery"})
    assert refused.status_code == 403


def test_session_cookie_flags_and_secure_behind_tls(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    client = web.client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/login",
        data={"username": "rad", "password": "correct horse battery", "csrf_token": token[1]},
    )
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    tls = web.app
    from fastapi.testclient import TestClient

    secure = TestClient(tls, base_url="https://radscribe.example", follow_redirects=False)
    page = secure.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    response = secure.post(
        "/login",
        data={"username": "rad", "password": "correct horse battery", "csrf_token": token[1]},
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


def test_a_resident_cannot_sign_final_but_an_attending_co_signs(web) -> None:
    web.seed.user("res", Role.RESIDENT)
    web.seed.user("att", Role.RADIOLOGIST)
    study = web.seed.study()
    web.seed.draft(study, uncertain=None)
    resident = web.client()
    token = web.login(resident, "res")
    headers = {"X-CSRF-Token": token}
    assert resident.post(f"/api/studies/{study}/claim", headers=headers).status_code == 200
    body = {"kind": "final", "sections": {"impression": "Right upper lobe nodule."}}
    refused = resident.post(f"/api/studies/{study}/sign", json=body, headers=headers)
    assert refused.status_code == 409
    assert "resident cannot sign a final" in refused.json()["detail"]
    body["kind"] = "preliminary"
    assert (
        resident.post(f"/api/studies/{study}/sign", json=body, headers=headers).status_code == 200
    )

    attending = web.client()
    att_token = web.login(attending, "att")
    att_headers = {"X-CSRF-Token": att_token}
    assert attending.post(f"/api/studies/{study}/claim", headers=att_headers).status_code == 200
    body = {"kind": "final", "sections": {"impression": "Nodule."}, "cosign": True}
    signed = attending.post(f"/api/studies/{study}/sign", json=body, headers=att_headers)
    assert signed.status_code == 200, signed.text
    detail = attending.get(f"/api/studies/{study}").json()
    final = detail["versions"][0]
    assert final["kind"] == "final"
    assert final["signer"] == "Dr Res" and final["cosigner"] == "Dr Att"


def test_a_second_reader_cannot_edit_a_claimed_study(web) -> None:
    web.seed.user("first", Role.RADIOLOGIST)
    web.seed.user("second", Role.RADIOLOGIST)
    study = web.seed.study()
    web.seed.draft(study)
    one, two = web.client(), web.client()
    h1 = {"X-CSRF-Token": web.login(one, "first")}
    h2 = {"X-CSRF-Token": web.login(two, "second")}
    assert one.post(f"/api/studies/{study}/claim", headers=h1).status_code == 200
    taken = two.post(f"/api/studies/{study}/claim", headers=h2)
    assert taken.status_code == 409 and "Dr First" in taken.json()["detail"]
    page = two.get(f"/studies/{study}")
    assert "Dr First" in page.text and "is reading this study" in page.text
    edit = two.put(
        f"/api/studies/{study}/report", json={"sections": {"impression": "x"}}, headers=h2
    )
    assert edit.status_code == 409
    sign = two.post(
        f"/api/studies/{study}/sign", json={"kind": "preliminary", "sections": {}}, headers=h2
    )
    assert sign.status_code == 409
    flags = one.get(f"/api/studies/{study}").json()["flags"]
    resolve = two.post(
        f"/api/studies/{study}/flags/{flags[0]['id']}",
        json={"resolution": "accepted"},
        headers=h2,
    )
    assert resolve.status_code == 409
    form = two.post(
        f"/studies/{study}/report",
        data={"csrf_token": h2["X-CSRF-Token"], "section__impression": "x"},
    )
    assert form.status_code == 409 and "Dr First is reading this study" in form.text
    versions = one.get(f"/api/studies/{study}").json()["versions"]
    assert len(versions) == 1  # nothing of the second reader was stored
    # worklist rows show who holds it
    rows = two.get("/api/worklist").json()["rows"]
    assert rows[0]["reader_name"] == "Dr First"


def test_idle_log_off_and_background_refresh_does_not_count(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    client = web.client()
    web.login(client, "rad")
    start = datetime.now(UTC)
    idle = timedelta(minutes=web.settings.session_idle_minutes)
    web.app.dependency_overrides[get_now] = lambda: start + idle / 2
    background = {"X-Radscribe-Background": "1"}
    assert client.get("/api/me", headers=background).status_code == 200
    web.app.dependency_overrides[get_now] = lambda: start + idle + timedelta(seconds=5)
    page = client.get("/worklist", headers=background)
    assert page.status_code == 303 and "reason=idle" in page.headers["location"]
    assert 'radscribe_session=""' in page.headers["set-cookie"]  # the browser forgets it
    assert client.get("/api/me").status_code == 401

    # real activity (not background) keeps the session alive
    other = web.client()
    web.app.dependency_overrides.clear()
    web.login(other, "rad")
    web.app.dependency_overrides[get_now] = lambda: start + idle * 0.9
    assert other.get("/api/me").status_code == 200
    web.app.dependency_overrides[get_now] = lambda: start + idle * 1.5
    assert other.get("/api/me").status_code == 200


def test_logout_ends_the_session_even_for_a_copied_cookie(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    client = web.client()
    token = web.login(client, "rad")
    copied = client.cookies.get(SESSION_COOKIE)
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login?reason=logout"
    thief = web.client()
    thief.cookies.set(SESSION_COOKIE, copied)
    assert thief.get("/api/me").status_code == 401


def test_failed_logins_slow_down_without_locking_out(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    client = web.client()
    start = datetime.now(UTC)
    web.app.dependency_overrides[get_now] = lambda: start

    def attempt(password: str) -> int:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        return client.post(
            "/login", data={"username": "rad", "password": password, "csrf_token": token[1]}
        ).status_code

    for _ in range(web.settings.login_throttle_failures):
        assert attempt("wrong password!") == 401
    assert attempt("correct horse battery") == 429  # even the right one waits a moment
    web.app.dependency_overrides[get_now] = lambda: start + timedelta(seconds=2)
    assert attempt("correct horse battery") == 303  # seconds, not a lock-out


def test_no_patient_data_in_urls_or_logs(web, caplog: pytest.LogCaptureFixture) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    study = web.seed.study(patient_name="ZEPHYRINE^QUILLON", mrn="PHI777", slices=3)
    web.seed.draft(study)
    caplog.set_level(logging.INFO)
    client = web.client()
    token = web.login(client, "rad")
    pages = [client.get("/worklist").text]
    pages.append(
        client.post("/worklist/rows", data={"csrf_token": token, "search": "zephyrine"}).text
    )
    client.post(f"/studies/{study}/claim", data={"csrf_token": token})
    pages.append(client.get(f"/studies/{study}").text)
    assert "ZEPHYRINE" in pages[-1]  # shown on the page...
    client.post(
        f"/studies/{study}/sign",
        data={"csrf_token": token, "kind": "final", "section__impression": "Nodule."},
    )
    urls = [u for text in pages for u in re.findall(r'(?:href|src|action)="([^"]+)"', text)]
    assert urls
    for url in urls:  # ...never in a link, image or form address
        assert "zephyrine" not in url.lower() and "phi777" not in url.lower(), url
    for record in caplog.records:
        line = record.getMessage().lower()
        assert "zephyrine" not in line and "quillon" not in line and "phi777" not in line, line


def test_worklist_rows_escape_every_outside_value(web) -> None:
    """The rows fragment renders with autoescape off (speed): each outside value escapes."""
    from sqlalchemy import update

    from app.core.tables import Study, User

    web.seed.user("rad", Role.RADIOLOGIST)
    web.seed.user("other", Role.RADIOLOGIST)
    hostile = "<script>alert(1)</script>"
    study = web.seed.study(patient_name=f"{hostile}^X", mrn='"><img src=x onerror=alert(2)>')
    with web.factory() as session, session.begin():
        session.execute(
            update(Study)
            .where(Study.id == study)
            .values(accession_number="<b>acc</b>", study_description=f"CT {hostile}")
        )
        session.execute(
            update(User).where(User.username == "other").values(display_name=f"Dr {hostile}")
        )
    holder = web.client()
    holder_token = web.login(holder, "other")
    assert (
        holder.post(f"/studies/{study}/claim", data={"csrf_token": holder_token}).status_code == 303
    )
    client = web.client()
    token = web.login(client, "rad")
    pages = [
        client.get("/worklist").text,
        client.post("/worklist/rows", data={"csrf_token": token}).text,
        client.post("/worklist/rows", data={"csrf_token": token, "status": hostile}).text,
    ]
    for text in pages:
        assert "<script>" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]  # the name, shown escaped
    assert "Dr &lt;script&gt;" in pages[1]  # the reader holding it
    assert "&lt;script&gt;" in pages[2]  # the refused filter value, echoed escaped
