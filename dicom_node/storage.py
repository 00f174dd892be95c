"""Durable instance files: a temporary file made durable, renamed, the rename made durable.

Files live at ``<root>/<study UID>/<series UID>/<SOP instance UID>.<digest>.dcm``.
UIDs are checked to be digits and dots before they become path parts, so a
path can never leave the storage root.  The digest (the first hex digits of
the SHA-256 of the data set bytes) makes a corrected instance a new file, so
the old one stays intact until the index points at the new one.

Each writer (one per process) keeps its temporary files in
``<root>/.incoming/<writer>/`` and holds an exclusive ``flock`` on a lock file
there while it lives.  :meth:`InstanceStore.clean_interrupted_writes` removes
the folders of writers that are gone, which is what an interrupted write
leaves behind.

Group commit (:class:`_CommitGroup`): whichever receiving thread finds no
commit round running moves the finished temporary files of every association
of the process into place, the others waiting for its rounds.  For each
file, in this order: its bytes are durable under the temporary name, then it
is renamed into place, then the rename is durable; only then does
:meth:`InstanceStore.commit` return (and the caller commits the index row and
answers).  By default each file is fsynced by its writer as soon as it is
complete (concurrent fsyncs share the file system's journal commits), and a
commit round renames whatever is durable and then fsyncs each folder renamed
into once, for all of them.  With ``file_system_flush`` one ``syncfs(2)`` of the
storage file system replaces both: it makes durable the bytes of every file
completed before it started and every rename made before it started, so one
flush covers the renames of one batch and the bytes of the next.

Which is faster depends on what else writes to that file system, because
``syncfs`` also writes back everyone else's dirty pages there.  Measured on
the 2-CPU VM (shared with other work at load 3-5, storage on the root file
system; scratch runs of ``bench_dicom_receive``'s receiver, variants
interleaved round by round, 200 slices of 512x512, four associations):
with syncfs 0.81-0.93x the rate of the previous design (a file fsync per
instance, folder fsyncs shared) in four paired comparisons of 12-16 rounds;
with the default 1.00x that design once it commits the row after the folder
fsync.  A scratch probe put two syncfs per instance at 5.5 ms median alone
and 11.5 ms (54 ms at worst) beside a process writing 64 MB/s, fsync of the
file and its folder at 8.1 and 9.8 ms.  On a file system of its own, with
many associations, syncfs needs fewer flushes: 1 where fsyncs of four
just-written files took 4 (scratch, ``/sys/block/vda/stat``).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import fcntl
import itertools
import logging
import mmap
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import cast

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


class UnsafePathError(ValueError):
    """A UID or stored path that would not stay inside the storage root."""


@dataclass(frozen=True)
class StoredFile:
    relative_path: str
    size_bytes: int


class _Stage(enum.Enum):
    WRITTEN = "written"  # complete under its temporary name; not yet covered by a flush
    DURABLE = "durable"  # its bytes are durable; where it goes is not known yet
    READY = "ready"  # durable and its place known: to be renamed
    RENAMED = "renamed"  # in its place; the rename not yet covered by a flush
    PLACED = "placed"  # in its place, the rename durable
    FAILED = "failed"
    DROPPED = "dropped"  # withdrawn by its owner (removed)


class TemporaryFile:
    """A temporary file written whole, on its way into place (:meth:`InstanceStore.commit`).

    Its stage and destination are kept by the store's :class:`_CommitGroup`,
    under the group's lock.
    """

    __slots__ = ("destination", "error", "path", "size_bytes", "stage")

    def __init__(self, path: Path, size_bytes: int, *, durable: bool = False) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.stage = _Stage.DURABLE if durable else _Stage.WRITTEN
        self.destination: Path | None = None
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return f"TemporaryFile({self.path.name!r}, {self.size_bytes}, {self.stage.value})"


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
    """The storage path of an instance, relative to the root (POSIX form)."""
    if len(digest) < DIGEST_CHARS or not all(c in "0123456789abcdef" for c in digest):
        raise UnsafePathError("digest must be lower-case hex")
    name = f"{_safe_uid(sop_instance_uid)}.{digest[:DIGEST_CHARS]}{INSTANCE_SUFFIX}"
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
        self,
        path: Path,
        buffers: _AlignedBuffers | None = None,
        write_at: int = DIRECT_WRITE_AT,
        group: _CommitGroup | None = None,
    ) -> None:
        self.path = path
        self._group = group
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
        """Write out what is staged and close: the file is complete under its temporary name.

        Fsynced here (durable on return) and handed to the store's commit
        group, if any; where the group flushes the whole file system
        (``file_system_flush``), not fsynced: its next flush makes the bytes
        durable.
        """
        group = self._group
        sync_here = group is None or not group.flushes_file_system
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
                if sync_here:
                    os.fsync(fd)
            finally:
                os.close(fd)
                self._release_buffer()
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        temporary = TemporaryFile(self.path, self._size, durable=sync_here)
        if group is not None:
            group.submit(temporary)
        return temporary

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


def _libc_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs`` (Linux), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return cast(Callable[[int], int], function)


class _FileSystemSync:
    """``syncfs(2)`` of the file system that holds ``folder``.

    Linux writes back every dirty page of the file system, commits its
    journal and flushes the disk's cache, and returns when that is done: what
    was written, truncated or renamed on that file system before the call is
    durable when it returns (on ext4, as an fsync of each file and folder
    would make it; with ``O_DIRECT`` files only the journal and the cache
    flush are left to do).  An error of writing back any file of the file
    system since the previous call is reported (``errseq``, per open file),
    so a failed call fails everything it was to cover.  ctypes releases the
    GIL around the call.
    """

    def __init__(self, folder: Path, syncfs: Callable[[int], int]) -> None:
        self._folder = folder
        self._syncfs = syncfs
        self._fd: int | None = None
        # Opened now: a call reports the write-back errors since the file was opened.
        with contextlib.suppress(OSError):  # then opened by the first call (or it fails)
            self._open()

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        return self._fd

    def __call__(self) -> None:
        if self._syncfs(self._open()) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"syncfs: {os.strerror(code)}")

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _CommitGroup:
    """Moves finished temporary files into place in batches, one disk flush at a time.

    Owners :meth:`submit` a file once it is written whole, and later
    :meth:`commit` it to a destination (blocking until it is placed and the
    placement is durable) or :meth:`drop` it.  Leader/follower: an owner in
    :meth:`commit` that finds no round running runs rounds itself until its
    own file is placed (a lone association hands nothing to another thread);
    the others wait for the rounds it runs.  A round:

    1. rename every file whose bytes are durable and whose destination is known;
    2. one flush, covering those renames (and, with ``syncfs``, the bytes of
       every file submitted before it started): an fsync of each folder renamed
       into, each file having been fsynced by its writer before it was
       submitted; or with ``syncfs`` a syncfs of the storage file system (the
       writers then do not fsync their files);
    3. the renames it covered are placed: their owners wake; with ``syncfs``
       the files submitted before it are durable (renamed in the next round).

    What arrives during a flush waits for the next one, so every flush serves
    all associations of the process at once.  A file is never renamed before
    its bytes are durable (its own fsync, or a syncfs that started after it was
    complete has ended).  A failed flush fails every file it was to cover: the
    owners answer with a failure, and nothing is acknowledged that might not
    be durable.
    """

    def __init__(
        self,
        *,
        folder: Path,
        rename: Callable[[TemporaryFile, Path], None],
        syncfs: Callable[[int], int] | None,
    ) -> None:
        self._rename = rename
        self._flush_file_system = _FileSystemSync(folder, syncfs) if syncfs is not None else None
        self._turn = threading.Condition()  # owners waiting for a round wait on it
        self._leading = False  # whether an owner is running a round
        self._written: list[TemporaryFile] = []
        self._ready: list[TemporaryFile] = []
        self.flushes = 0  # flushes run (the tests count them)

    @property
    def flushes_file_system(self) -> bool:
        """Whether a flush makes every completed write durable (the writers do not fsync)."""
        return self._flush_file_system is not None

    def submit(self, temporary: TemporaryFile) -> None:
        """A file written whole (and fsynced, unless the flush is the file system's)."""
        with self._turn:
            if temporary.stage is _Stage.WRITTEN:
                self._written.append(temporary)

    def commit(self, temporary: TemporaryFile, destination: Path) -> None:
        """Rename ``temporary`` to ``destination`` once its bytes are durable; return
        once the rename is durable.  On failure the temporary file is removed
        (unless the rename happened) and the error raised."""
        with self._turn:
            if temporary.stage is _Stage.DROPPED:
                raise FileNotFoundError(errno.ENOENT, "the temporary file was dropped")
            temporary.destination = destination
            if temporary.stage is _Stage.DURABLE:
                temporary.stage = _Stage.READY
                self._ready.append(temporary)
            while temporary.stage not in (_Stage.PLACED, _Stage.FAILED):
                if self._leading:
                    self._turn.wait()
                    continue
                self._leading = True
                self._turn.release()
                try:
                    self._round()
                finally:
                    self._turn.acquire()
                    self._leading = False
                    self._turn.notify_all()
            error = temporary.error
        if error is not None:
            raise error

    def drop(self, temporary: TemporaryFile) -> None:
        """Withdraw a file that will not be committed (its owner removes it)."""
        with self._turn:
            if temporary.stage in (_Stage.WRITTEN, _Stage.DURABLE):
                with contextlib.suppress(ValueError):
                    self._written.remove(temporary)
                temporary.stage = _Stage.DROPPED

    def close(self) -> None:
        """Close the file the flushes use (a later use opens it again)."""
        if self._flush_file_system is not None:
            self._flush_file_system.close()

    def _round(self) -> None:
        """One rename-and-flush round (run by the leading owner, without the lock)."""
        with self._turn:
            ready, self._ready = self._ready, []
        renamed: list[TemporaryFile] = []
        failed: list[tuple[TemporaryFile, BaseException]] = []
        for temporary in ready:
            assert temporary.destination is not None
            try:
                self._rename(temporary, temporary.destination)
            except Exception as exc:
                failed.append((temporary, exc))
            else:
                renamed.append(temporary)
        with self._turn:
            for temporary, rename_error in failed:
                self._fail(temporary, rename_error)
            for temporary in renamed:
                temporary.stage = _Stage.RENAMED
            written, self._written = self._written, []
        if not (written or renamed):
            return
        error: BaseException | None = None
        try:
            if self._flush_file_system is not None:
                self._flush_file_system()
            else:
                folders = {t.destination.parent for t in renamed if t.destination is not None}
                for folder in sorted(folders):
                    fsync_directory(folder)
        except Exception as flush_error:
            error = flush_error
        with self._turn:
            self.flushes += 1
            for temporary in written:
                if temporary.stage is not _Stage.WRITTEN:  # dropped meanwhile
                    continue
                if error is not None:
                    self._fail(temporary, error)
                elif temporary.destination is not None:
                    temporary.stage = _Stage.READY
                    self._ready.append(temporary)
                else:
                    temporary.stage = _Stage.DURABLE
            for temporary in renamed:
                if error is not None:
                    temporary.error = error
                    temporary.stage = _Stage.FAILED
                else:
                    temporary.stage = _Stage.PLACED

    def _fail(self, temporary: TemporaryFile, error: BaseException) -> None:
        """A file that will not be placed: removed, its owner told (call with the lock)."""
        temporary.error = error
        temporary.stage = _Stage.FAILED
        temporary.path.unlink(missing_ok=True)


class InstanceStore:
    """Instance files under one root, written so that an acknowledged file survives."""

    def __init__(
        self,
        *,
        root: Path,
        min_free_bytes: int = 0,
        direct_writes: bool = True,
        file_system_flush: bool = False,
    ) -> None:
        """``file_system_flush``: one ``syncfs`` per group commit where the platform has
        it, for storage on a file system of its own (see the module's notes); by
        default an fsync of each file and of each folder once per group commit."""
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
        self._group = _CommitGroup(
            folder=self.root,
            rename=self._rename,
            syncfs=_libc_syncfs() if file_system_flush else None,
        )
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
        return TemporaryWriter(writer / name, self._direct_buffers, write_at, self._group)

    def write_temporary(self, chunks: Sequence[bytes]) -> TemporaryFile:
        """Step 1: write ``chunks`` under a temporary name (see ``TemporaryWriter.finish``)."""
        writer = self.open_temporary()
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.abandon()
            raise
        return writer.finish()

    def commit(self, temporary: TemporaryFile, relative_path: str) -> StoredFile:
        """Steps 2-4: once its bytes are durable, rename a temporary file into its place
        (atomic, replacing any file there), and return once the rename is durable.

        Concurrent commits share flushes (see :class:`_CommitGroup`).  On failure
        the temporary file is gone (unless it was renamed: then it is in place,
        its rename perhaps not durable) and the error is raised.
        """
        try:
            destination = self.absolute(relative_path)
        except BaseException:
            self.discard(temporary)
            raise
        self._group.commit(temporary, destination)
        return StoredFile(relative_path, temporary.size_bytes)

    def _rename(self, temporary: TemporaryFile, destination: Path) -> None:
        """Rename a temporary file whose bytes are durable (in a commit round)."""
        try:
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

    @property
    def commit_flushes(self) -> int:
        """Flushes the commit group has run (one serves many commits)."""
        return self._group.flushes

    def discard(self, temporary: TemporaryFile) -> None:
        """Remove a temporary file that will not be committed."""
        self._group.drop(temporary)
        temporary.path.unlink(missing_ok=True)

    def write(self, relative_path: str, chunks: Sequence[bytes]) -> StoredFile:
        """All the steps: ``chunks`` durably at ``relative_path`` (replacing any file)."""
        return self.commit(self.write_temporary(chunks), relative_path)

    def remove(self, relative_path: str) -> None:
        path = self.absolute(relative_path)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_directory(path.parent)

    def close(self) -> None:
        """Close the commit group's file and release this writer's temporary folder (it is
        empty between writes)."""
        self._group.close()
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
                        self.commit(self._adopt(item), target)
                        report.salvaged += 1
                    else:
                        report.removed += 1
                shutil.rmtree(writer, ignore_errors=True)
            finally:
                os.close(fd)
        if report.removed or report.salvaged:
            fsync_directory(self._incoming)
        return report

    def _adopt(self, path: Path) -> TemporaryFile:
        """A leftover temporary file, handed to the commit group to be made durable."""
        flushed_by_group = self._group.flushes_file_system
        if not flushed_by_group:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        temporary = TemporaryFile(path, path.stat().st_size, durable=not flushed_by_group)
        self._group.submit(temporary)
        return temporary

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
