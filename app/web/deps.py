"""Dependencies of every route: settings, database session, clock, user, CSRF.

Tests replace them through ``app.dependency_overrides`` (for example the
clock, to walk past the idle time-out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.core.domain import Role
from app.core.settings import Settings
from app.core.tables import User
from app.web.sessions import (
    BACKGROUND_HEADER,
    CSRF_FIELD,
    CSRF_HEADER,
    REFRESH_AFTER_SECONDS,
    SESSION_COOKIE,
    STATE_CLEAR,
    STATE_SET,
    RevokedSessions,
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
        await run_in_threadpool(session.close)


async def get_now() -> datetime:
    return datetime.now(UTC)


async def get_codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.session_codec
    return codec


def get_revoked(request: Request) -> RevokedSessions:
    revoked: RevokedSessions = request.app.state.revoked_sessions
    return revoked


async def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[Session, Depends(get_db)]
NowDep = Annotated[datetime, Depends(get_now)]
CodecDep = Annotated[SessionCodec, Depends(get_codec)]
ClientDep = Annotated[str | None, Depends(client_address)]


def session_problem(
    data: SessionData | None,
    user: User | None,
    *,
    codec: SessionCodec,
    settings: Settings,
    revoked: RevokedSessions,
    now: float,
) -> str | None:
    """Why this session is not valid now, or None when it is."""
    if data is None:
        return "login required"
    if data.sid in revoked:
        return "logged out"
    if now - data.seen > settings.session_idle_minutes * 60:
        return "logged off after inactivity"
    if now - data.issued > settings.session_max_hours * 3600:
        return "session ended; please log in again"
    if user is None or not user.active:
        return "account not active"
    if codec.password_fingerprint(user.password_hash) != data.fingerprint:
        return "password changed; please log in again"
    return None


def current_user(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    codec: CodecDep,
    now: NowDep,
) -> User:
    """The logged-in user; refreshes the idle clock unless the request is background."""
    data = codec.decode(request.cookies.get(SESSION_COOKIE))
    user = db.get(User, data.uid) if data is not None else None
    moment = now.timestamp()
    problem = session_problem(
        data, user, codec=codec, settings=settings, revoked=get_revoked(request), now=moment
    )
    if problem is not None or data is None or user is None:
        if data is not None:
            setattr(request.state, STATE_CLEAR, True)
        raise NotAuthenticated(problem or "login required")
    request.state.session = data
    background = request.headers.get(BACKGROUND_HEADER) == "1"
    if not background and moment - data.seen >= REFRESH_AFTER_SECONDS:
        fresh = SessionData(
            sid=data.sid,
            uid=data.uid,
            issued=data.issued,
            seen=moment,
            fingerprint=data.fingerprint,
        )
        setattr(request.state, STATE_SET, fresh)
    return user


UserDep = Annotated[User, Depends(current_user)]


async def verify_csrf(request: Request, user: UserDep, codec: CodecDep) -> None:
    """Unsafe methods carry the session's CSRF token (header for scripts, field for forms)."""
    if request.method in SAFE_METHODS:
        return
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
