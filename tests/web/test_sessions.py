"""Server-side sessions: logout and idle log-off end the session row, in every web process."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from app.core import migrate
from app.core.db import make_engine, make_session_factory
from app.core.domain import Role
from app.core.tables import WebSession
from app.web.app import create_app
from app.web.deps import get_now
from app.web.sessions import SESSION_COOKIE, SessionCache
from tests.web.conftest import Seeder, client_for, login, web_settings


def test_logout_in_one_process_ends_the_session_in_another(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two apps on one PostgreSQL database stand for two web processes."""
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        factory = make_session_factory(engine)
        settings = web_settings(tmp_path, postgres_url)
        Seeder(factory=factory, storage_dir=settings.dicom_storage_dir).user(
            "rad", Role.RADIOLOGIST
        )
        first, second = create_app(settings, factory), create_app(settings, factory)
        second.state.session_cache = SessionCache(ttl=0.3)
        browser = client_for(first)
        token = login(browser, "rad")
        copied = browser.cookies.get(SESSION_COOKIE)
        assert copied
        elsewhere = client_for(second)
        elsewhere.cookies.set(SESSION_COOKIE, copied)
        assert elsewhere.get("/api/me").status_code == 200  # the same session, cached there

        out = browser.post("/logout", data={"csrf_token": token})
        assert out.status_code == 303
        assert browser.get("/api/me").status_code == 401  # at once in this process
        time.sleep(0.4)  # the other process trusts what it read for at most its cache time
        refused = elsewhere.get("/api/me")
        assert refused.status_code == 401 and refused.json()["detail"] == "logged out"

        with factory() as session:
            row = session.scalars(select(WebSession)).one()
        assert row.end_reason == "logout" and row.ended_at is not None
    finally:
        engine.dispose()


def test_the_row_holds_a_hash_of_the_session_id_and_idle_log_off_sticks(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    client = web.client()
    web.login(client, "rad")
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    sid = web.app.state.session_codec.decode(cookie).sid
    with web.factory() as session:
        row = session.scalars(select(WebSession)).one()
    assert row.id == hashlib.sha256(sid.encode()).hexdigest() and sid not in row.id
    assert row.ended_at is None and row.client_address == "testclient"

    idle = timedelta(minutes=web.settings.session_idle_minutes)
    start = datetime.now(UTC)
    web.app.dependency_overrides[get_now] = lambda: start + idle + timedelta(seconds=1)
    assert client.get("/api/me").json()["detail"] == "logged off after inactivity"
    # the clock going back (or a copy of the cookie) does not revive it: the row ended
    web.app.dependency_overrides[get_now] = lambda: start
    again = web.client()
    again.cookies.set(SESSION_COOKIE, cookie)
    assert again.get("/api/me").json()["detail"] == "logged off after inactivity"
    with web.factory() as session:
        row = session.scalars(select(WebSession)).one()
    assert row.end_reason == "idle"


def test_activity_is_recorded_in_the_row_but_background_refresh_is_not(web) -> None:
    web.seed.user("rad", Role.RADIOLOGIST)
    client = web.client()
    web.login(client, "rad")
    start = datetime.now(UTC)

    def seen() -> datetime:
        with web.factory() as session:
            moment = session.scalars(select(WebSession.seen_at)).one()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    before = seen()
    web.app.dependency_overrides[get_now] = lambda: start + timedelta(minutes=5)
    assert client.get("/api/me", headers={"X-Radscribe-Background": "1"}).status_code == 200
    assert seen() == before
    assert client.get("/api/me").status_code == 200
    assert seen() == start + timedelta(minutes=5)
