"""A process-local cache of answers that may be a few seconds old, refreshed by one caller.

When an entry expires under load, many requests would ask the database the
same question at once (and open extra connections to do it).  Here the first
caller after expiry is told to refresh (``get`` answers None to it alone)
while the others keep the previous answer for at most one more ``ttl``; after
that everyone asks, so a caller that failed to refresh holds nobody back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ShortCache(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._refreshing: set[K] = set()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The cached value, or None when this caller should ask (and ``put``)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = time.monotonic() - entry[0]
        if age <= self.ttl:
            return entry[1]
        if age > 2 * self.ttl:
            return None
        with self._lock:
            if key in self._refreshing:
                return entry[1]  # someone is asking already: the previous answer will do
            self._refreshing.add(key)
        return None

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                for old in [k for k, v in self._entries.items() if now - v[0] > 2 * self.ttl]:
                    del self._entries[old]
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (time.monotonic(), value)
            self._refreshing.discard(key)

    def drop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)
            self._refreshing.discard(key)
