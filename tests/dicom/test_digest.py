"""Content digests: BLAKE3 named with its algorithm, bare hex read as SHA-256."""

from __future__ import annotations

import functools
import hashlib

import pytest

from dicom_node.digest import (
    UnknownDigestError,
    algorithm_of,
    digest_of,
    hex_of,
    new_hasher,
    same_content,
)

# BLAKE3's published test vector for the empty input.
BLAKE3_EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_new_digests_are_named_blake3() -> None:
    assert digest_of(b"") == f"blake3:{BLAKE3_EMPTY}"
    assert algorithm_of(digest_of(b"x")) == "blake3"
    assert hex_of(digest_of(b"")) == BLAKE3_EMPTY


def test_pieces_hash_as_the_whole() -> None:
    data = bytes(range(256)) * 1000
    pieces = [memoryview(data)[i : i + 4096] for i in range(0, len(data), 4096)]
    assert digest_of(pieces) == digest_of(data)
    assert digest_of(pieces, "sha256") == hashlib.sha256(data).hexdigest()


def test_bare_hex_is_sha256() -> None:
    legacy = hashlib.sha256(b"abc").hexdigest()
    assert algorithm_of(legacy) == "sha256"
    assert hex_of(legacy) == legacy


def test_same_content_across_algorithms() -> None:
    data = b"a data set"
    by = functools.partial(digest_of, data)
    assert same_content(digest_of(data), digest_of(data), None)
    assert not same_content(digest_of(data), digest_of(b"another"), None)
    legacy = hashlib.sha256(data).hexdigest()
    assert same_content(legacy, digest_of(data), by)
    assert not same_content(hashlib.sha256(b"another").hexdigest(), digest_of(data), by)
    assert not same_content(legacy, digest_of(data), None)  # cannot tell: not the same


def test_unknown_algorithms_are_refused() -> None:
    with pytest.raises(UnknownDigestError):
        new_hasher("md5")
    with pytest.raises(UnknownDigestError):
        same_content("md5:00", digest_of(b""), functools.partial(digest_of, b""))
