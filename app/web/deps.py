"""Dependencies of every route: settings, database session, clock, user, CSRF.

Tests replace them through ``app.dependency_overrides`` (for example the
clock, to walk past the idle time-out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from starlette.concurrency import run_in_threadpool

from app.core.domain import Role
from app.core.settings import Settings
from app.core.tables import User
from app.services import web_sessions
from app.services.audit import AuditWriter
from app.services.web_sessions import SessionState
from app.web.sessions import (
    BACKGROUND_HEADER,
    CSRF_FIELD,
    CSRF_HEADER,
    REFRESH_AFTER_SECONDS,
    SESSION_COOKIE,
    STATE_CLEAR,
    SessionCache,
    SessionCodec,
    SessionData,
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotAuthenticated(Exception):
    """No valid session: pages redirect to the login page, the API answers 401."""

    def __init__(self, reason: str = "login required") -> None:
        super().__init__(reason)
        self.reason = reason


class Forbidden(Exception):
    """The user is logged in but may not do this; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfFailed(Exception):
    """An unsafe request without the session's CSRF token."""


# Trivial dependencies are async so they run on the event loop, not a worker thread.
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request; it connects on first use, in the handler's thread."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():  # rolling back talks to the database
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_now() -> datetime:
    return datetime.now(UTC)


async def get_codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.session_codec
    return codec


def get_audit_writer(request: Request) -> AuditWriter:
    writer: AuditWriter = request.app.state.audit_writer
    return writer


def get_session_cache(request: Request) -> SessionCache:
    cache: SessionCache = request.app.state.session_cache
    return cache


async def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Session, Depends(get_db)]
NowDep = Annotated[datetime, Depends(get_now)]
CodecDep = Annotated[SessionCodec, Depends(get_codec)]
ClientDep = Annotated[str | None, Depends(client_address)]


END_MESSAGES = {
    web_sessions.ENDED_LOGOUT: "logged out",
    web_sessions.ENDED_IDLE: "logged off after inactivity",
    web_sessions.ENDED_EXPIRED: "session ended; please log in again",
}
_USER_COLUMNS = tuple(attr.key for attr in inspect(User).column_attrs)


def session_problem(
    data: SessionData,
    state: SessionState,
    user: dict[str, Any],
    *,
    codec: SessionCodec,
    settings: Settings,
    now: float,
) -> tuple[str, str | None] | None:
    """Why this session is not valid now and how to end it (None when it is valid)."""
    if state.end_reason is not None:
        return END_MESSAGES.get(state.end_reason, "logged out"), None
    if state.user_id != data.uid:
        return "login required", None
    if now - state.seen_at > settings.session_idle_minutes * 60:
        return END_MESSAGES[web_sessions.ENDED_IDLE], web_sessions.ENDED_IDLE
    if now - state.created_at > settings.session_max_hours * 3600:
        return END_MESSAGES[web_sessions.ENDED_EXPIRED], web_sessions.ENDED_EXPIRED
    if not user["active"]:
        return "account not active", web_sessions.ENDED_EXPIRED
    if codec.password_fingerprint(user["password_hash"]) != data.fingerprint:
        return "password changed; please log in again", web_sessions.ENDED_EXPIRED
    return None


def _load(db: Session, key: str, cache: SessionCache) -> tuple[SessionState, dict[str, Any]] | None:
    found = web_sessions.load_session(db, key)
    if found is None:
        cache.drop(key)
        return None
    state, user = found
    values = {name: getattr(user, name) for name in _USER_COLUMNS}
    db.expunge(user)
    cache.put(key, (state, values))
    return state, values


def _attached_user(db: Session, values: dict[str, Any]) -> User:
    """A User for this request built from the cached row, attached without a query."""
    user = User(**values)
    make_transient_to_detached(user)
    db.add(user)
    return user


def _checked_in_database(
    request: Request,
    db: Session,
    data: SessionData,
    *,
    settings: Settings,
    codec: SessionCodec,
    now: datetime,
    cached: tuple[SessionState, dict[str, Any]] | None,
) -> tuple[SessionState, dict[str, Any]]:
    """The slow path, in a worker thread: read the row, end it or record activity."""
    cache = get_session_cache(request)
    key = web_sessions.session_key(data.sid)
    moment = now.timestamp()
    found = cached
    if found is None or session_problem(data, *found, codec=codec, settings=settings, now=moment):
        found = _load(db, key, cache)  # a refusal is never made on a cached row
    problem = (
        None
        if found is None
        else session_problem(data, *found, codec=codec, settings=settings, now=moment)
    )
    if found is None or problem is not None:
        setattr(request.state, STATE_CLEAR, True)
        if problem is not None and problem[1] is not None:
            web_sessions.end_session(db, key, reason=problem[1], now=now)
            db.commit()
            cache.drop(key)
        raise NotAuthenticated(problem[0] if problem else "login required")
    state, values = found
    touched = _records_activity(request, state, moment)
    if touched:
        web_sessions.touch_session(db, key, now)
    db.commit()  # the handler starts on a fresh transaction (or none)
    if touched:
        state = replace(state, seen_at=moment)
        cache.put(key, (state, values))
    return state, values


def _records_activity(request: Request, state: SessionState, moment: float) -> bool:
    background = request.headers.get(BACKGROUND_HEADER) == "1"
    return not background and moment - state.seen_at >= REFRESH_AFTER_SECONDS


async def current_user(request: Request, db: DbDep, now: NowDep) -> User:
    """The logged-in user; records activity unless the request is background.

    A session this process read moments ago is checked on the event loop without
    a query; anything else (first sight, a refusal, activity to record) goes to the
    database in a worker thread.  (Settings and codec come from the app state, not
    as dependencies: every request resolves this one, so it stays small.)
    """
    settings: Settings = request.app.state.settings
    codec: SessionCodec = request.app.state.session_codec
    data = codec.decode(request.cookies.get(SESSION_COOKIE))
    if data is None:
        raise NotAuthenticated("login required")
    found = get_session_cache(request).get(web_sessions.session_key(data.sid))
    fast = (
        found is not None
        and session_problem(data, *found, codec=codec, settings=settings, now=now.timestamp())
        is None
        and not _records_activity(request, found[0], now.timestamp())
    )
    if not fast or found is None:
        found = await run_in_threadpool(
            _checked_in_database,
            request,
            db,
            data,
            settings=settings,
            codec=codec,
            now=now,
            cached=found,
        )
    request.state.session = data
    return _attached_user(db, found[1])


UserDep = Annotated[User, Depends(current_user)]


async def verify_csrf(request: Request, user: UserDep) -> None:
    """Unsafe methods carry the session's CSRF token (header for scripts, field for forms)."""
    if request.method in SAFE_METHODS:
        return
    codec: SessionCodec = request.app.state.session_codec
    data: SessionData = request.state.session
    expected = codec.csrf_token(data.sid)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            field = form.get(CSRF_FIELD)
            given = field if isinstance(field, str) else None
    if not codec.check(expected, given):
        raise CsrfFailed()


def csrf_token_for(request: Request) -> str:
    data: SessionData = request.state.session
    codec: SessionCodec = request.app.state.session_codec
    return codec.csrf_token(data.sid)


def require_roles(*roles: Role) -> Any:
    allowed = frozenset(roles)

    def check(user: UserDep) -> User:
        if user.role not in allowed:
            raise Forbidden(f"this needs the role {' or '.join(r.value for r in roles)}")
        return user

    return Depends(check)


AdminDep = Annotated[User, require_roles(Role.ADMIN)]
ReaderDep = Annotated[User, require_roles(Role.RADIOLOGIST, Role.RESIDENT)]
