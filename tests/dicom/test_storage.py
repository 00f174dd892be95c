"""Durable instance files: safe paths, atomic writes, cleanup after interrupted writes."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from dicom_node import storage as storage_module
from dicom_node.storage import (
    INCOMING_DIR,
    LOCK_NAME,
    InstanceStore,
    UnsafePathError,
    instance_relative_path,
)

DIGEST = "ab" * 32


def test_paths_come_from_uids_and_stay_under_the_root(tmp_path: Path) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    relative = instance_relative_path(
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        sop_instance_uid="1.2.3.4.5",
        digest=DIGEST,
    )
    assert relative == f"1.2.3/1.2.3.4/1.2.3.4.5.{DIGEST[:16]}.dcm"
    assert store.root in store.absolute(relative).parents


@pytest.mark.parametrize("uid", ["..", "../x", "1.2/3", "/etc", "1\\2", "", "1..2", ".hidden"])
def test_uids_that_could_escape_are_refused(uid: str) -> None:
    with pytest.raises(UnsafePathError):
        instance_relative_path(
            study_instance_uid=uid, series_instance_uid="1.2", sop_instance_uid="1.3", digest=DIGEST
        )


@pytest.mark.parametrize(
    "relative", ["../x.dcm", "/etc/passwd", "a/../../x.dcm", f"{INCOMING_DIR}/w/x.tmp", ""]
)
def test_stored_paths_outside_the_root_are_refused(tmp_path: Path, relative: str) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    with pytest.raises(UnsafePathError):
        store.absolute(relative)


@pytest.mark.parametrize(
    "relative", ["a/b/..", "a/b/../../x.dcm", "a/../../b/x.dcm", "../b/x.dcm", "/a/b/x.dcm"]
)
def test_a_folder_already_checked_does_not_let_unsafe_paths_through(
    tmp_path: Path, relative: str
) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    assert store.absolute("a/b/x.dcm") == store.root / "a" / "b" / "x.dcm"
    with pytest.raises(UnsafePathError):
        store.absolute(relative)
    assert store.absolute("a/b/y.dcm") == store.root / "a" / "b" / "y.dcm"


def test_a_write_lands_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    stored = store.write("1.2/1.3/1.4.x.dcm", (b"head", b"body" * 1000))
    path = store.absolute(stored.relative_path)
    assert path.read_bytes() == b"head" + b"body" * 1000
    assert stored.size_bytes == 4004
    writers = list((store.root / INCOMING_DIR).iterdir())
    assert all({p.name for p in w.iterdir()} == {LOCK_NAME} for w in writers)
    # Writing again replaces the file atomically.
    store.write("1.2/1.3/1.4.x.dcm", (b"new",))
    assert path.read_bytes() == b"new"
    store.close()


def test_a_folder_removed_behind_the_stores_back_is_recreated(tmp_path: Path) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    store.write("1.2/1.3/a.dcm", (b"a",))
    shutil.rmtree(store.root / "1.2")
    store.write("1.2/1.3/b.dcm", (b"b",))
    assert (store.root / "1.2" / "1.3" / "b.dcm").read_bytes() == b"b"


def test_interrupted_writes_of_dead_writers_are_cleaned_but_live_ones_kept(
    tmp_path: Path,
) -> None:
    root = tmp_path / "dicom"
    live = InstanceStore(root=root)
    live.write("1.2/1.3/1.4.x.dcm", (b"x",))
    live_dir = next((root / INCOMING_DIR).iterdir())
    (live_dir / "inflight.tmp").write_bytes(b"half")
    # A writer that died mid-write: its folder, its lock file (unlocked), a partial file.
    dead_dir = root / INCOMING_DIR / "host-999999-dead"
    dead_dir.mkdir()
    (dead_dir / LOCK_NAME).touch()
    (dead_dir / "abc.tmp").write_bytes(b"partial")
    restarted = InstanceStore(root=root)
    assert restarted.clean_interrupted_writes().removed == 1
    assert not dead_dir.exists()
    assert (live_dir / "inflight.tmp").exists()
    # Once the live writer is gone, its leftovers go too.
    live.close()
    assert not live_dir.exists()


def test_a_held_lock_is_what_keeps_a_writer_alive(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    store = InstanceStore(root=root)
    writer = root / INCOMING_DIR / "other"
    writer.mkdir()
    fd = os.open(writer / LOCK_NAME, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (writer / "f.tmp").write_bytes(b"x")
    try:
        assert store.clean_interrupted_writes().removed == 0
        assert writer.exists()
    finally:
        os.close(fd)
    assert store.clean_interrupted_writes().removed == 1


def test_free_space_floor(tmp_path: Path) -> None:
    assert InstanceStore(root=tmp_path, min_free_bytes=0).has_room(1_000)
    assert not InstanceStore(root=tmp_path, min_free_bytes=2**62).has_room(1_000)


def test_stored_files_are_listed(tmp_path: Path) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    store.write("1.2/1.3/a.dcm", (b"a",))
    store.write("1.2/1.4/b.dcm", (b"b",))
    (store.root / "1.2" / "1.3" / "notes.txt").write_text("x")
    assert sorted(store.iter_instance_files()) == ["1.2/1.3/a.dcm", "1.2/1.4/b.dcm"]


def test_concurrent_folder_syncs_are_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renames into one folder that wait while an fsync runs share the next one."""
    calls: list[float] = []
    real = storage_module.fsync_directory

    def slow_fsync(path: Path) -> None:
        calls.append(time.monotonic())
        time.sleep(0.05)
        real(path)

    store = InstanceStore(root=tmp_path / "dicom")
    store.write("1.2/1.3/first.dcm", (b"folders made",))
    temporaries = [store.write_temporary((f"file {n}".encode(),)) for n in range(8)]
    monkeypatch.setattr(storage_module, "fsync_directory", slow_fsync)
    threads = [
        threading.Thread(target=store.commit, args=(temporaries[n], f"1.2/1.3/{n}.dcm"))
        for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The first runs alone; the seven that arrived meanwhile share at most one more
    # (a few may be late to the first), far fewer than one each.
    assert 1 <= len(calls) <= 4
    for n in range(8):
        assert store.absolute(f"1.2/1.3/{n}.dcm").read_bytes() == f"file {n}".encode()


def test_a_failed_folder_fsync_fails_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Success may follow a rename that is not durable: the error reaches the caller."""
    store = InstanceStore(root=tmp_path / "dicom")
    store.write("1.2/1.3/first.dcm", (b"folders made",))

    def failing(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage_module, "fsync_directory", failing)
    with pytest.raises(OSError, match="Input/output"):
        store.commit(store.write_temporary((b"x",)), "1.2/1.3/second.dcm")


def test_an_unsafe_destination_removes_the_temporary_file(tmp_path: Path) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    temporary = store.write_temporary((b"x",))
    with pytest.raises(UnsafePathError):
        store.commit(temporary, "../outside.dcm")
    assert not temporary.path.exists()


@pytest.mark.parametrize("early", [False, True])
@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize(
    "pieces",
    [
        [],
        [1],
        [4095],
        [4096],
        [4097],
        [132, 262_144, 262_144, 1000],  # File Meta, then PDU-sized fragments
        [storage_module.DIRECT_WRITE_AT - 1, 2, storage_module.DIRECT_ALIGNMENT + 3],
        [storage_module.EARLY_WRITE_AT - 1, 2, storage_module.DIRECT_ALIGNMENT + 3],
        [storage_module.DIRECT_BUFFER_BYTES + 5],  # more than one staging buffer
        [7] * 1000,  # many small pieces
    ],
)
def test_temporary_files_hold_exactly_what_was_written(
    tmp_path: Path, direct: bool, early: bool, pieces: list[int]
) -> None:
    store = InstanceStore(root=tmp_path / "dicom", direct_writes=direct)
    chunks = [os.urandom(size) for size in pieces]
    writer = store.open_temporary(early_writes=early)
    assert (writer._buffers is not None) is direct  # ext4 under tmp_path takes O_DIRECT
    for chunk in chunks:
        writer.write(memoryview(chunk))
    written = writer.finish()
    assert written.size_bytes == sum(pieces)
    assert written.path.read_bytes() == b"".join(chunks)
    # The staging buffer went back for the next file, which starts clean.
    again = store.write_temporary([b"next"])
    assert again.path.read_bytes() == b"next"


@pytest.mark.parametrize("early", [False, True])
def test_early_writes_reach_the_file_while_pieces_arrive(tmp_path: Path, early: bool) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    writer = store.open_temporary(early_writes=early)
    data = os.urandom(storage_module.EARLY_WRITE_AT + 10)
    writer.write(data)
    on_disk = writer.path.stat().st_size
    assert on_disk == (storage_module.EARLY_WRITE_AT if early else 0)
    assert writer.finish().path.read_bytes() == data


def test_an_abandoned_direct_write_leaves_nothing_and_refuses_more(tmp_path: Path) -> None:
    store = InstanceStore(root=tmp_path / "dicom")
    writer = store.open_temporary()
    writer.write(os.urandom(storage_module.DIRECT_WRITE_AT + 10))
    writer.abandon()
    assert not writer.path.exists()
    with pytest.raises(OSError):
        writer.write(b"more")
    with pytest.raises(OSError):
        writer.finish()
