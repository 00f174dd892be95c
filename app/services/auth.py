"""Logging in: password check, audit, and a slow-down after failed attempts.

Failed logins are audit events; the slow-down counts them (per user name and
per client address) in a recent window, so it holds across web processes.
After ``failures`` misses each further attempt must wait longer (1 s, 2 s,
4 s ... up to ``max_wait``): an attacker is slowed to a crawl, a radiologist
who mistyped at night waits seconds, never a lock-out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.core.tables import AuditEvent, User
from app.services import audit
from app.services.outbox import as_utc
from app.services.users import verify_password

LOGIN_FAILED = "auth.login_failed"
LOGIN = "auth.login"
LOGOUT = "auth.logout"
SESSION_EXPIRED = "auth.session_expired"


@cache
def _dummy_hash() -> str:
    """Verified against when the user name is unknown, so both cases take as long."""
    return PasswordHasher().hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class LoginPolicy:
    failures: int
    window: timedelta
    max_wait_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(
            failures=settings.login_throttle_failures,
            window=timedelta(minutes=settings.login_throttle_window_minutes),
            max_wait_seconds=settings.login_throttle_max_seconds,
        )


class LoginRefused(Exception):
    """Login did not succeed; ``message`` is safe to show, ``retry_after`` set when slowed."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def wait_seconds(
    session: Session,
    *,
    username: str,
    client_address: str | None,
    now: datetime,
    policy: LoginPolicy,
) -> float:
    """Seconds to wait before the next attempt for this name or address (0: go ahead)."""
    who = [AuditEvent.object_id == username]
    if client_address:
        who.append(AuditEvent.client_address == client_address)
    recent = (
        select(AuditEvent.object_id, AuditEvent.client_address, AuditEvent.at)
        .where(AuditEvent.action == LOGIN_FAILED, AuditEvent.at >= now - policy.window, or_(*who))
        .subquery()
    )
    by_name, by_address, last = session.execute(
        select(
            func.count().filter(recent.c.object_id == username),
            func.count().filter(recent.c.client_address == client_address),
            func.max(recent.c.at),
        )
    ).one()
    misses = max(int(by_name or 0), int(by_address or 0))
    if misses < policy.failures or last is None:
        return 0.0
    wait = min(policy.max_wait_seconds, 2.0 ** (misses - policy.failures))
    remaining = wait - (now - as_utc(last)).total_seconds()
    return max(0.0, remaining)


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    client_address: str | None,
    now: datetime,
    policy: LoginPolicy,
) -> User:
    """The active user with this password, or :class:`LoginRefused`; audited either way."""
    name = username.strip()[:64]
    waiting = wait_seconds(
        session, username=name, client_address=client_address, now=now, policy=policy
    )
    if waiting > 0:
        raise LoginRefused(
            f"Too many failed logins. Try again in {max(1, round(waiting))} s.",
            retry_after=waiting,
        )
    user = session.scalar(select(User).where(User.username == name)) if name else None
    if user is None:
        verify_password(User(password_hash=_dummy_hash(), active=True), password)
        ok = False
    else:
        ok = verify_password(user, password)
    if not ok or user is None:
        failed = audit.record(
            session,
            actor=name or "-",
            action=LOGIN_FAILED,
            object_type="user",
            object_id=name,
            user_id=user.id if user else None,
            client_address=client_address,
        )
        failed.at = now  # the slow-down measures from the same clock
        session.flush()
        raise LoginRefused("Wrong user name or password.")
    user.last_login_at = now
    audit.record(
        session,
        actor=user.username,
        action=LOGIN,
        object_type="user",
        object_id=user.id,
        user_id=user.id,
        client_address=client_address,
    )
    return user
