"""Server-side web sessions: one row per login, ended by logout, idle time or age.

The browser's cookie carries only a signed random session id; the row is the
truth, so ending it ends every copy of the cookie in every web process.  Rows
are keyed by the SHA-256 of the id, so the table alone cannot be replayed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.tables import User, WebSession
from app.services.outbox import as_utc

ENDED_LOGOUT = "logout"
ENDED_IDLE = "idle"
ENDED_EXPIRED = "expired"


@dataclass(frozen=True)
class SessionState:
    """A session row as the web layer checks it (times in epoch seconds)."""

    key: str
    user_id: int
    created_at: float
    seen_at: float
    end_reason: str | None  # None while the session is live


def session_key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def open_session(
    db: Session, *, sid: str, user_id: int, now: datetime, client_address: str | None
) -> SessionState:
    """A new live session, written in the caller's transaction (the login's)."""
    key = session_key(sid)
    db.add(
        WebSession(
            id=key,
            user_id=user_id,
            created_at=now,
            seen_at=now,
            client_address=client_address,
        )
    )
    moment = now.timestamp()
    return SessionState(
        key=key, user_id=user_id, created_at=moment, seen_at=moment, end_reason=None
    )


_LOAD = select(WebSession, User).join(User, User.id == WebSession.user_id)


def load_session(db: Session, key: str) -> tuple[SessionState, User] | None:
    """The session and its user in one query, or None when there is no such session."""
    found = db.execute(_LOAD.where(WebSession.id == key)).first()
    if found is None:
        return None
    row, user = found
    state = SessionState(
        key=row.id,
        user_id=row.user_id,
        created_at=as_utc(row.created_at).timestamp(),
        seen_at=as_utc(row.seen_at).timestamp(),
        end_reason=(row.end_reason or ENDED_LOGOUT) if row.ended_at is not None else None,
    )
    return state, user


def touch_session(db: Session, key: str, now: datetime) -> None:
    """Record activity (the idle clock restarts); an ended session stays ended."""
    db.execute(
        update(WebSession)
        .where(WebSession.id == key, WebSession.ended_at.is_(None))
        .values(seen_at=now)
    )


def end_session(db: Session, key: str, *, reason: str, now: datetime) -> None:
    """End a live session for good (logout, idle log-off, too old)."""
    db.execute(
        update(WebSession)
        .where(WebSession.id == key, WebSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
    )
