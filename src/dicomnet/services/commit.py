"""Publishing received datasets as files: unnamed until whole, durable before named.

Theory of operation
-------------------
A C-STORE's dataset is written by the codec's pump straight into an
:class:`IncomingFile`: an unnamed file opened with ``O_TMPFILE`` in the
storage's ``.incoming`` folder (Linux 3.11+, most local file systems), or,
where that is refused, a temporary name there. The codec also hands over the
dataset's SHA-256, computed while the fragments were written, and its first
bytes, from which the indexed attributes are read without reopening the file.

:meth:`Publisher.publish` then gives the file its final name, in the order
``shared/durability.md`` rule 3 sets:

* ``fsync=False``: ``linkat`` the unnamed file to its name (it fails
  atomically if the name exists), on the event loop, since no call here can
  block for long.
* ``fsync=True``: the instance joins the batch of the committer thread; each
  batch runs ``fdatasync`` on every file in it, then ``linkat`` for each, then
  one ``fsync`` per folder that received a name. Every instance completed
  while a batch runs goes into the next one, so one round of syncs serves
  them all (group commit), and none is reported published before the
  ``fsync`` of its folder has returned. A batch of several files uses two
  ``syncfs`` instead (data before the links, names after), whatever the
  number of files and folders in it.

A crash before ``linkat`` leaves nothing: an unnamed file vanishes with its
descriptor. With temporary names (the fallback) a crash leaves a
``*.part`` file that :func:`dicomnet.services.storage.remove_leftovers`
deletes at the next start.

Study and series folders are created once and remembered; a folder removed
behind the publisher's back (maintenance) is created again on the next
``ENOENT``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import hashlib
import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

__all__ = ["HEAD_LENGTH", "IncomingFile", "Published", "Publisher"]

log = logging.getLogger("dicomnet.services.commit")

HEAD_LENGTH = 16 << 10
"""Bytes of each dataset's start kept in memory to read its indexed attributes."""

SYNCFS_FROM = 4
"""Files in a group commit from which one ``syncfs`` beats a sync per file and folder."""

FOLDER_CACHE = 4096
"""Series folders remembered as existing; the memory is dropped when full."""

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT})
"""What open(O_TMPFILE) fails with where the kernel or the file system lacks it."""
_NO_LINK = frozenset({errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOENT})


class IncomingFile:
    """One dataset on its way to disk: the file sink the codec writes itself.

    The codec writes the fragments to :meth:`fileno` and calls
    :meth:`finished` once; :meth:`write` serves datasets that arrive through
    Python instead (collected in memory, or a codec without the pump). Never
    raises from either: the first OS error is kept in :attr:`error` and the
    storage answers A700.

    Attributes
    ----------
    size : int
        Dataset bytes received (the Part 10 header excluded).
    error : OSError or None
        The first failure writing the file.
    digest : bytes
        SHA-256 of the dataset from the codec, ``b""`` if it computed none.
    head : bytes
        The first :data:`HEAD_LENGTH` bytes of the dataset (all of a smaller one).
    """

    __slots__ = (
        "_fd",
        "committing",
        "digest",
        "error",
        "head",
        "head_length",
        "header_size",
        "size",
        "started",
        "temp_path",
        "wants_digest",
    )

    def __init__(
        self, fd: int, temp_path: str | None, header: bytes, started: float, digest: bool = True
    ) -> None:
        self._fd = fd
        self.wants_digest = digest
        self.temp_path = temp_path
        """The temporary name, or None for an unnamed (O_TMPFILE) file."""
        self.header_size = len(header)
        self.head_length = HEAD_LENGTH
        self.size = 0
        self.error: OSError | None = None
        self.digest = b""
        self.head = b""
        self.started = started
        self.committing = False
        try:
            _write_all(fd, header)
        except OSError as exc:
            self.error = exc

    def fileno(self) -> int:
        return self._fd

    def finished(self, size: int, error: int, digest: bytes, head: bytes) -> None:
        """The codec wrote the last fragment (see ``Assembler``)."""
        self.size = size
        if error and self.error is None:
            self.error = OSError(error, os.strerror(error))
        self.digest = digest
        self.head = head

    def write(self, fragment: Any) -> None:
        """Append a fragment handed over through Python."""
        if self.error is not None:
            return
        view = memoryview(fragment).cast("B")
        try:
            _write_all(self._fd, view)
        except OSError as exc:
            self.error = exc
            return
        if len(self.head) < self.head_length:
            self.head += bytes(view[: self.head_length - len(self.head)])
        self.size += len(view)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def sha256(self) -> str:
        """The dataset's SHA-256 in hex: the codec's, else read back from the file."""
        if self.digest:
            return self.digest.hex()
        digest = hashlib.sha256()
        offset = self.header_size
        end = offset + self.size
        while offset < end:
            chunk = os.pread(self._fd, min(1 << 20, end - offset), offset)
            if not chunk:
                raise OSError(errno.EIO, f"file ends {end - offset} bytes early")
            digest.update(chunk)
            offset += len(chunk)
        self.digest = digest.digest()
        return self.digest.hex()

    def read_head(self, length: int) -> bytes:
        """The first ``length`` bytes of the dataset, from memory or from the file."""
        if length <= len(self.head) or len(self.head) >= self.size:
            return self.head[:length]
        return os.pread(self._fd, min(length, self.size), self.header_size)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        """Close and forget the file: nothing stays visible. Never raises."""
        with contextlib.suppress(OSError):
            self.close()
        path, self.temp_path = self.temp_path, None
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)


@dataclass(frozen=True, slots=True)
class Published:
    """Where a file went, and whether an instance held that name already."""

    path: str
    duplicate: bool


class Publisher:
    """Creates incoming files and publishes them under their final names.

    Parameters
    ----------
    root : str
        The storage folder; incoming files live in ``root/.incoming``, which
        must be on the same file system as every final name.
    fsync : bool
        Make data and names durable before :meth:`publish` returns, by group
        commit on one thread.
    replace : bool
        An existing name is replaced (atomically, by rename) instead of kept.
    prefetch : int
        Incoming files one thread keeps created ahead of time (0: none). A
        file system that recycles many inodes can take a millisecond per
        creation, all of it on the event loop without this; the thread
        refills the reserve in batches, woken once per ``prefetch // 2``
        files taken, and an unnamed file it made vanishes with the process.
    """

    def __init__(
        self, root: str, *, fsync: bool, replace: bool = False, prefetch: int = 0
    ) -> None:
        self.root = root
        self.incoming = os.path.join(root, ".incoming")
        os.makedirs(self.incoming, exist_ok=True)
        self.fsync = fsync
        self.replace = replace
        self._tmpfile = bool(_O_TMPFILE)
        self._pid = os.getpid()
        self._names = itertools.count()
        self._folders: set[str] = set()
        self._batch: list[tuple[IncomingFile, str, asyncio.Future[Published]]] = []
        self._committing = False
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._proc = _open_proc() if _O_TMPFILE else -1
        self._tmpfile = self._proc >= 0
        self.batches = 0
        """Group commits run (for tests and metrics: fewer than instances under load)."""
        self._syncfs = _load_syncfs()
        self._fs = os.open(self.incoming, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        """A descriptor on the storage's file system, for ``syncfs``."""
        self._prefetch = prefetch
        self._ready: collections.deque[tuple[int, str | None]] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._filler: threading.Thread | None = None

    # -- incoming files ------------------------------------------------------------------
    def create(self, header: bytes, started: float, digest: bool = True) -> IncomingFile:
        """A new incoming file holding ``header`` (raises OSError); ``digest``: ask
        the codec for the dataset's SHA-256."""
        if self._prefetch:
            try:
                fd, temp = self._ready.popleft()
            except IndexError:
                pass
            else:
                self._refill()
                return IncomingFile(fd, temp, header, started, digest)
            self._refill()
        fd, temp = self._open()
        return IncomingFile(fd, temp, header, started, digest)

    def _refill(self) -> None:
        """Wake the filler thread when the reserve is half gone (started on first use)."""
        if len(self._ready) > self._prefetch // 2 or self._wake.is_set() or self._closed:
            return
        if self._filler is None:
            self._filler = threading.Thread(
                target=self._fill, name="dicomnet-incoming", daemon=True
            )
            self._filler.start()
        self._wake.set()

    def _fill(self) -> None:
        """The filler thread: top the reserve up each time it is woken."""
        while True:
            self._wake.wait()
            self._wake.clear()  # before the check: a wake-up from close() is never lost
            if self._closed:
                return
            try:
                while len(self._ready) < self._prefetch and not self._closed:
                    self._ready.append(self._open())
            except OSError as exc:  # the event loop creates its own and reports the error
                log.debug("cannot create incoming files ahead in %s: %s", self.incoming, exc)

    def _open(self) -> tuple[int, str | None]:
        """A new empty incoming file: (descriptor, temporary name or None)."""
        if self._tmpfile:
            try:
                fd = os.open(self.incoming, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE:
                    raise
                log.info("%s: no O_TMPFILE (%s); temporary names instead", self.incoming, exc)
                self._tmpfile = False
            else:
                return fd, None
        path = os.path.join(self.incoming, f"{self._pid}.{next(self._names)}.part")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        return os.open(path, flags, 0o644), path

    # -- folders ---------------------------------------------------------------------------
    def folder(self, *names: str) -> str:
        """``root/name/...``, created (durably under fsync) the first time it is asked for."""
        path = os.path.join(self.root, *names)
        if path in self._folders:
            return path
        parent = self.root
        for name in names:
            child = os.path.join(parent, name)
            try:
                os.mkdir(child)
            except FileExistsError:
                pass
            else:
                if self.fsync:
                    _fsync_folder(parent)
            parent = child
        if len(self._folders) >= FOLDER_CACHE:
            self._folders.clear()
        self._folders.add(path)
        return path

    def forget(self, path: str) -> None:
        """A folder turned out missing: create it again next time."""
        self._folders.discard(path)

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, file: IncomingFile, final: str) -> Published:
        """Give ``file`` the name ``final`` (its folder exists), durably under fsync.

        The file is closed when this returns or raises; on failure it is
        discarded. Raises OSError.
        """
        if not self.fsync:
            try:
                return _link(file, final, self.replace, self._proc)
            finally:
                file.discard()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Published] = loop.create_future()
        self._batch.append((file, final, done))
        if not self._committing:
            self._committing = True
            self._task = loop.create_task(self._commit_batches())
        return await asyncio.shield(done)

    async def _commit_batches(self) -> None:
        """Run batches until none is waiting; each on the committer thread, one hop each."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="dicomnet-commit")
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                items = [(file, final) for file, final, _ in batch]
                try:
                    results = await loop.run_in_executor(self._executor, self._commit, items)
                except BaseException as exc:  # the thread pool is gone: fail them all
                    results = [exc] * len(batch)
                self.batches += 1
                for (_, _, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, BaseException):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._committing = False

    def _commit(self, items: list[tuple[IncomingFile, str]]) -> list[Published | BaseException]:
        """One group commit, on the committer thread: data, names, folders.

        A batch of :data:`SYNCFS_FROM` files or more is made durable with two
        ``syncfs`` calls (Linux), one before the links (the data of every
        file) and one after (every new name), whatever the number of files
        and folders; a smaller one with ``fdatasync`` per file and ``fsync``
        per folder. A name whose sync failed is removed again: its instance
        is answered A700 and must not stay visible without its index row.
        """
        results: list[Published | BaseException] = [Published(final, False) for _, final in items]
        whole_fs = self._syncfs is not None and len(items) >= SYNCFS_FROM
        if whole_fs:
            failed = self._sync_all()
            if failed is not None:
                for file, _ in items:
                    file.discard()  # rule 9: a failed sync is final for these writes
                return [failed] * len(items)
        else:
            for slot, (file, _) in enumerate(items):
                try:
                    os.fdatasync(file.fileno())
                except OSError as exc:
                    file.discard()
                    results[slot] = exc
        folders: dict[str, list[int]] = {}
        for slot, (file, final) in enumerate(items):
            if isinstance(results[slot], BaseException):
                continue
            try:
                results[slot] = published = _link(file, final, self.replace, self._proc)
            except OSError as exc:
                results[slot] = exc
                continue
            finally:
                file.discard()
            if not published.duplicate or self.replace:
                folders.setdefault(os.path.dirname(final), []).append(slot)
        if whole_fs:
            failed = self._sync_all()
            failures = {folder: failed for folder in folders} if failed is not None else {}
        else:
            failures = {}
            for folder in folders:
                try:
                    _fsync_folder(folder)
                except OSError as exc:
                    failures[folder] = exc
        for folder, error in failures.items():
            for slot in folders[folder]:
                named = results[slot]
                if isinstance(named, Published) and not named.duplicate:
                    with contextlib.suppress(OSError):
                        os.unlink(named.path)
                results[slot] = error
        return results

    def _sync_all(self) -> OSError | None:
        """``syncfs`` of the storage's file system; the error, if it failed."""
        assert self._syncfs is not None
        try:
            self._syncfs(self._fs)
        except OSError as exc:
            return exc
        return None

    async def drain(self) -> None:
        """Wait until no batch runs (shutdown)."""
        while self._committing or self._batch:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        """Stop the threads; incoming files made ahead of time go."""
        self._closed = True
        self._wake.set()
        if self._filler is not None:
            self._filler.join()
            self._filler = None
        while self._ready:
            fd, temp = self._ready.popleft()
            with contextlib.suppress(OSError):
                os.close(fd)
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._proc >= 0:
            os.close(self._proc)
            self._proc = -1
        if self._fs >= 0:
            os.close(self._fs)
            self._fs = -1


def _link(file: IncomingFile, final: str, replace: bool, proc: int) -> Published:
    """Name the file ``final``: a link that fails if the name exists, or a rename.

    An unnamed file is linked through ``/proc/self/fd`` (``proc`` is an open
    descriptor of ``/proc``): giving a directory descriptor makes Python call
    ``linkat`` with ``AT_SYMLINK_FOLLOW``, which links the file itself rather
    than the magic link (plain ``link`` fails with EXDEV there).
    """
    named = file.temp_path is not None

    def link(target: str) -> None:
        if named:
            os.link(file.temp_path or "", target)
        else:
            os.link(f"self/fd/{file.fileno()}", target, src_dir_fd=proc, follow_symlinks=True)

    try:
        link(final)
    except FileExistsError:
        if not replace:
            return Published(final, True)
        # replace: a second name beside the final one, then an atomic rename over it
        beside = f"{final}.{os.getpid()}.{id(file):x}.part"
        link(beside)
        os.replace(beside, final)
        return Published(final, True)
    except OSError as exc:
        if exc.errno not in _NO_LINK or file.temp_path is None:
            raise
        if os.path.exists(final) and not replace:  # no hard links here
            return Published(final, True)
        os.replace(file.temp_path, final)
        file.temp_path = None
    return Published(final, False)


def _load_syncfs() -> Callable[[int], None] | None:
    """``syncfs(fd)`` from the C library (Linux 2.6.39+), raising OSError; else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if function(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return syncfs


def _open_proc() -> int:
    """A descriptor of /proc, through which unnamed files get linked; -1 without it."""
    try:
        return os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return -1


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    written = os.write(fd, view)
    while written < len(view):
        written += os.write(fd, view[written:])

