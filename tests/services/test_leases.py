"""Of several processes asking for a lease, exactly one holds it until it expires."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from app.services.leases import acquire, release


def test_one_owner_at_a_time(session_factory: sessionmaker[Session]) -> None:
    assert acquire(session_factory, "outbox", "a", ttl_seconds=30)
    assert not acquire(session_factory, "outbox", "b", ttl_seconds=30)
    assert acquire(session_factory, "outbox", "a", ttl_seconds=30)  # renewal
    release(session_factory, "outbox", "a")
    assert acquire(session_factory, "outbox", "b", ttl_seconds=30)


def test_an_expired_lease_passes_on(session_factory: sessionmaker[Session]) -> None:
    assert acquire(session_factory, "ready-scan", "a", ttl_seconds=0.2)
    time.sleep(0.3)
    assert acquire(session_factory, "ready-scan", "b", ttl_seconds=30)
    assert not acquire(session_factory, "ready-scan", "a", ttl_seconds=30)


def test_concurrent_claims_have_one_winner(session_factory: sessionmaker[Session]) -> None:
    owners = [f"worker-{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda o: acquire(session_factory, "duty", o, ttl_seconds=30), owners)
        )
    assert results.count(True) == 1
