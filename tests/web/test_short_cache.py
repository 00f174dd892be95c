"""The short-lived cache: after expiry one caller refreshes while the others wait on
the previous answer, and nobody uses an answer older than two lifetimes."""

from __future__ import annotations

import time

from app.services.short_cache import ShortCache


def test_one_caller_refreshes_the_others_keep_the_previous_answer() -> None:
    cache: ShortCache[str, int] = ShortCache(ttl=0.2)
    assert cache.get("total") is None
    cache.put("total", 1)
    assert cache.get("total") == 1
    time.sleep(0.25)
    assert cache.get("total") is None  # the first caller after expiry asks the database
    assert cache.get("total") == 1  # the others keep the previous answer meanwhile
    cache.put("total", 2)
    assert cache.get("total") == 2
    time.sleep(0.45)  # older than two lifetimes: nobody uses it, everyone asks
    assert cache.get("total") is None and cache.get("total") is None
    cache.drop("total")
    assert cache.get("total") is None
