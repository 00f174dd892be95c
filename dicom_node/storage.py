"""Durable instance files: write to a temporary name, fsync, rename, fsync the folder.

Files live at ``<root>/<study UID>/<series UID>/<SOP instance UID>.<digest>.dcm``.
UIDs are checked to be digits and dots before they become path parts, so a
path can never leave the storage root.  The digest in the name (the first
hex digits of the data set's :mod:`dicom_node.digest`) makes a corrected
instance a new file, so the old one stays intact until the index points at
the new one.

Each writer (one per process) keeps its temporary files in
``<root>/.incoming/<writer>/`` and holds an exclusive ``flock`` on a lock file
there while it lives.  :meth:`InstanceStore.clean_interrupted_writes` removes
the folders of writers that are gone, which is what an interrupted write
leaves behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import mmap
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dicom_node.digest import HEX_DIGITS, hex_of
from dicom_node.header import MAX_UID_LENGTH, UID_PATTERN

log = logging.getLogger(__name__)

INCOMING_DIR = ".incoming"
LOCK_NAME = ".lock"
TEMP_SUFFIX = ".tmp"
INSTANCE_SUFFIX = ".dcm"
DIGEST_CHARS = 16
FILE_MODE = 0o640
DIR_MODE = 0o750
FREE_SPACE_RECHECK_SECONDS = 0.5
# Direct (O_DIRECT) writes: offsets, lengths and buffers aligned to the page size
# (a multiple of any disk's logical block size).  Staged pieces are written out once
# the buffer is full, or when the file is finished: one write for most instances.
# Each write costs a system call, pinning the buffer's pages and a disk request (a
# virtual machine exit to notify a virtio disk): writing 256 KiB blocks while the rest
# was on the wire cost about 0.4 ms more CPU per 512x512 slice with four senders.
# A lone sender waits for the disk instead (nothing else to do meanwhile), so its
# files are written in EARLY_WRITE_AT blocks, the disk working while the rest
# arrives (about 15% more instances/s over one association on a busy disk).
DIRECT_ALIGNMENT = mmap.PAGESIZE
DIRECT_BUFFER_BYTES = 1 << 20
DIRECT_WRITE_AT = DIRECT_BUFFER_BYTES
EARLY_WRITE_AT = 256 * 1024
MAX_SPARE_BUFFERS = 64
MAX_CHECKED_FOLDERS = 4096
MAX_SYNC_GROUPS = 64


class UnsafePathError(ValueError):
    """A UID or stored path that would not stay inside the storage root."""


@dataclass(frozen=True)
class StoredFile:
    relative_path: str
    size_bytes: int


@dataclass(frozen=True)
class TemporaryFile:
    path: Path
    size_bytes: int


@dataclass
class CleanupReport:
    removed: int = 0
    salvaged: int = 0


# Given a leftover temporary file, the stored path it belongs at, or None to drop it.
Salvage = Callable[[Path], str | None]


def _safe_uid(uid: str) -> str:
    if not uid or len(uid) > MAX_UID_LENGTH or not UID_PATTERN.match(uid) or ".." in uid:
        raise UnsafePathError(f"{uid[:80]!r} is not a UID that can name a file")
    return uid


def instance_relative_path(
    *, study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str, digest: str
) -> str:
    """The storage path of an instance, relative to the root (POSIX form); its name
    carries the first hex digits of ``digest`` (see :mod:`dicom_node.digest`)."""
    hex_digits = hex_of(digest)[:DIGEST_CHARS]
    if len(hex_digits) < DIGEST_CHARS or not HEX_DIGITS.issuperset(hex_digits):
        raise UnsafePathError("digest must be lower-case hex")
    name = f"{_safe_uid(sop_instance_uid)}.{hex_digits}{INSTANCE_SUFFIX}"
    return f"{_safe_uid(study_instance_uid)}/{_safe_uid(series_instance_uid)}/{name}"


def _supports_direct_writes(directory: Path) -> bool:
    """Whether files in ``directory`` can be opened with ``O_DIRECT`` (not on tmpfs
    before Linux 6.6, for example)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    probe = directory / f".direct-probe{TEMP_SUFFIX}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, FILE_MODE)
    except OSError:
        probe.unlink(missing_ok=True)
        return False
    os.close(fd)
    probe.unlink(missing_ok=True)
    return True


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    total = len(view)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    return total


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


class _AlignedBuffers:
    """Page-aligned staging buffers for direct writes, kept for reuse.

    A fresh buffer is memory the process has never touched (page faults, and on a
    virtual machine often host faults as well); reusing a few avoids that.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.size)

    def give(self, buffer: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < MAX_SPARE_BUFFERS:
                self._free.append(buffer)
                return
        buffer.close()


class TemporaryWriter:
    """A temporary file written piece by piece (for example as a data set arrives).

    With ``buffers`` the file is opened with ``O_DIRECT``: pieces are staged in an
    aligned buffer and written straight from it to the disk in aligned blocks
    (once ``write_at`` bytes are staged, see ``DIRECT_WRITE_AT``), the last block
    zero-padded and the file truncated to its size before the fsync.  The data
    has to reach the disk before it is acknowledged anyway; this way it is not
    first copied into the page cache, which cost more CPU than anything else on
    the receive path (fresh page-cache pages for every instance).  Without
    ``buffers``, ordinary buffered writes.

    Thread-safe: after :meth:`abandon` from another thread, writes raise
    instead of touching the descriptor (never used after close).
    """

    def __init__(
        self, path: Path, buffers: _AlignedBuffers | None = None, write_at: int = DIRECT_WRITE_AT
    ) -> None:
        self.path = path
        self._write_at = write_at
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        if buffers is not None:
            flags |= os.O_DIRECT
        self._fd: int | None = os.open(path, flags, FILE_MODE)
        self._size = 0
        self._lock = threading.Lock()
        self._buffers = buffers
        self._buffer: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._staged = 0  # bytes in the buffer, not yet written
        self._offset = 0  # bytes of the file written (a multiple of DIRECT_ALIGNMENT)
        if buffers is not None:
            self._buffer = buffers.take()
            self._view = memoryview(self._buffer)

    @property
    def size_bytes(self) -> int:
        return self._size

    def write(self, data: bytes | memoryview) -> None:
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "the temporary file was abandoned")
            if self._view is None:
                self._size += _write_all(self._fd, data)
                return
            self._stage(self._fd, self._view, memoryview(data))

    def _stage(self, fd: int, view: memoryview, data: memoryview) -> None:
        """Copy ``data`` into the staging buffer, writing out whole aligned blocks."""
        capacity = len(view)
        self._size += len(data)
        while data:
            count = min(len(data), capacity - self._staged)
            view[self._staged : self._staged + count] = data[:count]
            self._staged += count
            data = data[count:]
            if self._staged >= self._write_at or self._staged == capacity:
                aligned = self._staged - self._staged % DIRECT_ALIGNMENT
                _pwrite_all(fd, view[:aligned], self._offset)
                self._offset += aligned
                tail = self._staged - aligned
                view[:tail] = bytes(view[aligned : self._staged])
                self._staged = tail

    def finish(self) -> TemporaryFile:
        """fsync and close; the file is then complete and durable under its temporary name."""
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "the temporary file was abandoned")
            fd, self._fd = self._fd, None
            view = self._view
        try:
            try:
                if view is not None and self._staged:
                    padded = -(-self._staged // DIRECT_ALIGNMENT) * DIRECT_ALIGNMENT
                    view[self._staged : padded] = bytes(padded - self._staged)
                    _pwrite_all(fd, view[:padded], self._offset)
                    os.ftruncate(fd, self._size)
                os.fsync(fd)
            finally:
                os.close(fd)
                self._release_buffer()
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return TemporaryFile(self.path, self._size)

    def abandon(self) -> None:
        """Close (if open) and remove the temporary file."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            self._release_buffer()
        self.path.unlink(missing_ok=True)

    def _release_buffer(self) -> None:
        buffer, self._buffer = self._buffer, None
        view, self._view = self._view, None
        if view is not None:
            view.release()
        if buffer is not None and self._buffers is not None:
            self._buffers.give(buffer)


class _SyncGroup:
    """Leader/follower: one fsync serves every request made before it started."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._running = False
        self._waiters = 0

    @property
    def idle(self) -> bool:
        with self._turn:
            return self._waiters == 0 and not self._running

    def sync(self, fsync: Callable[[], None]) -> None:
        with self._turn:
            self._requested += 1
            ticket = self._requested
            self._waiters += 1
            try:
                while self._completed < ticket:
                    if self._running:
                        self._turn.wait()
                        continue
                    self._running = True
                    covered = self._requested
                    synced = False
                    self._turn.release()
                    try:
                        fsync()
                        synced = True
                    finally:
                        self._turn.acquire()
                        self._running = False
                        if synced:
                            self._completed = max(self._completed, covered)
                        self._turn.notify_all()
            finally:
                self._waiters -= 1


class InstanceStore:
    """Instance files under one root, written so that an acknowledged file survives."""

    def __init__(self, *, root: Path, min_free_bytes: int = 0, direct_writes: bool = True) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.min_free_bytes = min_free_bytes
        # O_DIRECT temporary files where the file system takes them (see TemporaryWriter).
        self.direct_writes = direct_writes
        self._direct_buffers: _AlignedBuffers | None = None
        self._incoming = self.root / INCOMING_DIR
        self._incoming.mkdir(exist_ok=True)
        self._writer_dir: Path | None = None
        self._lock_fd: int | None = None
        self._known_dirs: set[Path] = set()
        # Folder part of a stored path -> its absolute path, once checked (see absolute).
        self._checked_folders: dict[str, Path] = {}
        self._temporary_names = itertools.count()
        self._directory_syncs: dict[Path, _SyncGroup] = {}
        self._mutex = threading.Lock()
        self._free_estimate = 0
        self._free_checked_at = -FREE_SPACE_RECHECK_SECONDS  # time.monotonic()

    # -- paths -----------------------------------------------------------------
    def absolute(self, relative_path: str) -> Path:
        """The absolute path of a stored file; refuses anything outside the root.

        A file in a folder already checked (every instance of a series) is
        joined to that folder's path without parsing and checking it again.
        """
        folder, _, name = relative_path.rpartition("/")
        parent = self._checked_folders.get(folder)
        if parent is not None and name not in ("", ".", ".."):
            return parent / name
        path = self._checked_absolute(relative_path)
        if name not in ("", ".", ".."):
            with self._mutex:
                if len(self._checked_folders) >= MAX_CHECKED_FOLDERS:
                    self._checked_folders.clear()
                self._checked_folders[folder] = path.parent
        return path

    def _checked_absolute(self, relative_path: str) -> Path:
        parts = PurePosixPath(relative_path).parts
        if (
            not parts
            or PurePosixPath(relative_path).is_absolute()
            or any(part in ("", ".", "..") for part in parts)
            or parts[0] == INCOMING_DIR
        ):
            raise UnsafePathError(f"{relative_path!r} is not a stored instance path")
        path = self.root.joinpath(*parts)
        if self.root not in path.parents:
            raise UnsafePathError(f"{relative_path!r} leaves the storage root")
        return path

    def exists(self, relative_path: str) -> bool:
        return self.absolute(relative_path).is_file()

    # -- space -----------------------------------------------------------------
    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def has_room(self, incoming_bytes: int) -> bool:
        """True while writing ``incoming_bytes`` keeps free space above the floor.

        The file system is asked at most every ``FREE_SPACE_RECHECK_SECONDS``
        (``statvfs`` takes a fraction of a millisecond on a busy disk); in
        between, the bytes let in are deducted from its last answer.
        """
        with self._mutex:
            now = time.monotonic()
            if now - self._free_checked_at >= FREE_SPACE_RECHECK_SECONDS:
                self._free_estimate = self.free_bytes()
                self._free_checked_at = now
            if self._free_estimate - incoming_bytes < self.min_free_bytes:
                return False
            self._free_estimate -= incoming_bytes
            return True

    # -- writing ---------------------------------------------------------------
    def _writer(self) -> Path:
        with self._mutex:
            if self._writer_dir is None:
                name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                writer = self._incoming / name
                writer.mkdir(mode=DIR_MODE)
                fd = os.open(writer / LOCK_NAME, os.O_WRONLY | os.O_CREAT, FILE_MODE)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd, self._writer_dir = fd, writer
                if self.direct_writes and _supports_direct_writes(writer):
                    self._direct_buffers = _AlignedBuffers(DIRECT_BUFFER_BYTES)
            return self._writer_dir

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing: list[Path] = []
        current = directory
        while current != self.root and not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=DIR_MODE)
            # The new entry is durable only once its parent is synced.
            fsync_directory(path.parent)
        self._known_dirs.add(directory)

    def open_temporary(self, *, early_writes: bool = False) -> TemporaryWriter:
        """Step 1, piece by piece: a new temporary file to write into, then ``finish()``.

        ``early_writes``: direct writes in ``EARLY_WRITE_AT`` blocks as pieces arrive
        (for a writer that would otherwise wait for the disk at the end)."""
        writer = self._writer()  # a folder of this writer's own: a counter names its files
        name = f"{next(self._temporary_names)}{TEMP_SUFFIX}"
        write_at = EARLY_WRITE_AT if early_writes else DIRECT_WRITE_AT
        return TemporaryWriter(writer / name, self._direct_buffers, write_at)

    def write_temporary(self, chunks: Sequence[bytes]) -> TemporaryFile:
        """Step 1: write ``chunks`` under a temporary name and fsync it."""
        writer = self.open_temporary()
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abandon()
            raise
        return writer.finish()

    def commit(self, temporary: TemporaryFile, relative_path: str) -> StoredFile:
        """Steps 2 and 3: rename a fsynced temporary file into its place (atomic, replacing
        any file there), then fsync the folder so the rename survives a power loss.

        The caller commits the index row only after this returns, so no row ever
        names a file whose rename might not be durable.  Concurrent commits into
        one folder share fsyncs: one that starts after a caller's rename covers
        it, so while one runs, the renames that arrive meanwhile wait for the
        next one instead of each issuing its own.  On failure before the rename
        the temporary file is removed and the error raised.
        """
        try:
            destination = self.absolute(relative_path)
            self._ensure_dir(destination.parent)
            try:
                os.replace(temporary.path, destination)
            except FileNotFoundError:  # the folder was removed behind our back
                self._known_dirs.discard(destination.parent)
                self._ensure_dir(destination.parent)
                os.replace(temporary.path, destination)
        except BaseException:
            temporary.path.unlink(missing_ok=True)
            raise
        directory = destination.parent
        with self._mutex:
            group = self._directory_syncs.get(directory)
            if group is None:
                group = self._directory_syncs[directory] = _SyncGroup()
        group.sync(lambda: fsync_directory(directory))
        with self._mutex:  # kept for the next instance of the series, within a bound
            if len(self._directory_syncs) > MAX_SYNC_GROUPS:
                for other in [d for d, g in self._directory_syncs.items() if g.idle]:
                    del self._directory_syncs[other]
        return StoredFile(relative_path, temporary.size_bytes)

    def discard(self, temporary: TemporaryFile) -> None:
        temporary.path.unlink(missing_ok=True)

    def write(self, relative_path: str, chunks: Sequence[bytes]) -> StoredFile:
        """All three steps: ``chunks`` durably at ``relative_path`` (replacing any file)."""
        return self.commit(self.write_temporary(chunks), relative_path)

    def remove(self, relative_path: str) -> None:
        path = self.absolute(relative_path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_directory(path.parent)

    def close(self) -> None:
        """Release this writer's temporary folder (it is empty between writes)."""
        with self._mutex:
            if self._writer_dir is not None:
                shutil.rmtree(self._writer_dir, ignore_errors=True)
                self._writer_dir = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- recovery --------------------------------------------------------------
    def clean_interrupted_writes(self, salvage: Salvage | None = None) -> CleanupReport:
        """Deal with temporary files of writers that no longer run.

        ``salvage`` may claim a leftover for a stored path (a write whose index
        row committed while its rename was lost); it is then moved into place.
        Every other leftover is removed.
        """
        report = CleanupReport()
        for writer in sorted(self._incoming.iterdir()):
            if writer == self._writer_dir:
                continue
            if not writer.is_dir():
                writer.unlink(missing_ok=True)
                report.removed += 1
                continue
            try:
                fd = os.open(writer / LOCK_NAME, os.O_WRONLY | os.O_CREAT, FILE_MODE)
            except OSError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                        continue  # a live writer
                    raise
                for item in sorted(writer.iterdir()):
                    if item.name == LOCK_NAME:
                        continue
                    target = salvage(item) if salvage and item.is_file() else None
                    if target is not None:
                        self.commit(TemporaryFile(item, item.stat().st_size), target)
                        report.salvaged += 1
                    else:
                        report.removed += 1
                shutil.rmtree(writer, ignore_errors=True)
            finally:
                os.close(fd)
        if report.removed or report.salvaged:
            fsync_directory(self._incoming)
        return report

    def iter_instance_files(self) -> Iterator[str]:
        """Relative paths of every stored instance file (``*.dcm``)."""
        for study in sorted(os.scandir(self.root), key=lambda entry: entry.name):
            if study.name == INCOMING_DIR or not study.is_dir(follow_symlinks=False):
                continue
            for series in os.scandir(study.path):
                if not series.is_dir(follow_symlinks=False):
                    continue
                for item in os.scandir(series.path):
                    if item.name.endswith(INSTANCE_SUFFIX) and item.is_file(follow_symlinks=False):
                        yield f"{study.name}/{series.name}/{item.name}"
