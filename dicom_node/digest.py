"""Content digests of received data sets: BLAKE3, named with their algorithm.

A digest reads ``blake3:<64 hex digits>``.  One without a name is SHA-256,
as the node wrote them before: rows and file names keep those until their
instance arrives again, and comparisons with them hash the new data set with
SHA-256 (see :func:`same_content`).

Why BLAKE3: the receive path hashes every byte it stores, and BLAKE3 takes
about a quarter of SHA-256's time (with the CPU's SHA extensions) for a
512x512 CT slice: 0.125 against 0.555 ms per 525 kB on the 2-CPU VM,
2026-11-30 (``bench/bench_digest.py``).  Both are cryptographic 256-bit
digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Protocol

import blake3

ALGORITHM = "blake3"
LEGACY_ALGORITHM = "sha256"  # digests written without a name
SEPARATOR = ":"
HEX_DIGITS = frozenset("0123456789abcdef")

Buffer = bytes | bytearray | memoryview


class Hasher(Protocol):
    def update(self, data: Buffer, /) -> object: ...

    def hexdigest(self) -> str: ...


class UnknownDigestError(ValueError):
    """A digest of an algorithm this node does not know."""


def new_hasher(algorithm: str = ALGORITHM) -> Hasher:
    if algorithm == ALGORITHM:
        return blake3.blake3()
    if algorithm == LEGACY_ALGORITHM:
        return hashlib.sha256()
    raise UnknownDigestError(f"unknown digest algorithm {algorithm!r}")


def named(algorithm: str, hex_digest: str) -> str:
    """The stored form of a digest (SHA-256 ones stay unnamed, as before)."""
    return hex_digest if algorithm == LEGACY_ALGORITHM else f"{algorithm}{SEPARATOR}{hex_digest}"


def digest_of(chunks: Buffer | Iterable[Buffer], algorithm: str = ALGORITHM) -> str:
    """The digest of ``chunks`` (one buffer, or its pieces in order), in stored form."""
    hasher = new_hasher(algorithm)
    if isinstance(chunks, bytes | bytearray | memoryview):
        hasher.update(chunks)
    else:
        for chunk in chunks:
            hasher.update(chunk)
    return named(algorithm, hasher.hexdigest())


def algorithm_of(digest: str) -> str:
    algorithm, separator, _ = digest.partition(SEPARATOR)
    return algorithm if separator else LEGACY_ALGORITHM


def hex_of(digest: str) -> str:
    """The hex digits of a digest (for file names)."""
    return digest.rpartition(SEPARATOR)[2]


def same_content(stored: str, new: str, digest_by: Callable[[str], str] | None) -> bool:
    """Whether a stored digest and a new data set's digest ``new`` name the same bytes.

    With different algorithms (a row from before BLAKE3), ``digest_by`` hashes
    the new data set with the stored digest's algorithm; without it the two
    cannot be compared and count as different.
    """
    if algorithm_of(stored) == algorithm_of(new):
        return stored == new
    if digest_by is None:
        return False
    return digest_by(algorithm_of(stored)) == stored
