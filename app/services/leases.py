"""Named leases in the database: one process at a time runs a duty.

Several processes (receivers, workers, web replicas) share one database; the
series-ready scan, the outbox sender and other periodic duties must each run
in exactly one of them.  A lease is a row with an owner and an expiry; taking
it is a guarded UPDATE (or the first INSERT), so two processes never both win.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import updated_rows
from app.core.tables import Lease


def process_identity() -> str:
    """A name for this process that is unique across machines and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(factory: sessionmaker[Session], name: str, owner: str, *, ttl_seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``owner``; False if someone else holds it."""
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl_seconds)
    with factory() as session, session.begin():
        taken = updated_rows(
            session.execute(
                update(Lease)
                .where(Lease.name == name, (Lease.owner == owner) | (Lease.expires_at < now))
                .values(owner=owner, expires_at=expires)
            )
        )
        if taken:
            return True
    try:
        with factory() as session, session.begin():
            session.add(Lease(name=name, owner=owner, expires_at=expires))
        return True
    except IntegrityError:
        return False


def release(factory: sessionmaker[Session], name: str, owner: str) -> None:
    with factory() as session, session.begin():
        session.execute(delete(Lease).where(Lease.name == name, Lease.owner == owner))
