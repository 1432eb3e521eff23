"""The built-in C-STORE SCP: stream each dataset into a Part 10 file, durably.

Theory of operation
-------------------
When a C-STORE-RQ's command set completes, :meth:`FolderStorage.sink` opens a
temporary file in ``.incoming`` inside the storage folder and writes the
preamble and a File Meta group built from the command set and the
presentation context. Each dataset fragment is then written to it as it
arrives (the codec hands over views of the receive buffer), so a 2 GB dataset
never sits in memory. When the last fragment arrives, the commit, in a worker
thread, follows ``shared/durability.md``: digest, ``fsync(file)``, then the
file is installed under its final name (a hard link, which fails atomically
if the name exists, or an atomic rename under ``replace``) and its folder is
fsynced; only then is Success answered. On any failure the temporary file is
deleted and the answer is a failure status: A700 (out of resources) for an OS
error, A900 when the command does not match the presentation context, C000
when the command or the dataset's UIDs cannot be understood.

Files are named only from validated UIDs (digits and dots, at most 64
characters), so no peer value reaches a path unchecked. With the study layout
the Study and Series Instance UIDs are read from the written file's header at
commit, and must be valid too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import hashlib
import itertools
import logging
import mmap
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnet.core.status import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    SUCCESS,
    WARNING,
)
from dicomnet.core.uids import is_valid_uid
from dicomnet.dataset.attributes import read_file_attributes
from dicomnet.dataset.part10 import encode_file_meta
from dicomnet.net.association import IncomingRequest
from dicomnet.net.provider import DatasetSink, StoreObserver
from dicomnet.services.store_events import dataset_started, report_store, source_ae_title

__all__ = [
    "DUPLICATE_POLICIES",
    "LAYOUTS",
    "DirectorySync",
    "FolderStorage",
    "Installed",
    "Rejected",
    "StoreSink",
    "StoredInstance",
    "remove_leftovers",
]

log = logging.getLogger("dicomnet.services.storage")

AFFECTED_SOP_CLASS_UID = 0x00000002
AFFECTED_SOP_INSTANCE_UID = 0x00001000
COMMAND_FIELD = 0x00000100
C_STORE_RQ = 0x0001

LAYOUTS = ("study", "flat")
DUPLICATE_POLICIES = ("keep", "replace", "reject")
INCOMING = ".incoming"
"""The folder, inside the storage folder, of files still being received."""

_PLACEMENT_TAGS = {
    0x00080018: "SOPInstanceUID",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
}

DIGEST_WINDOW = 16 << 20
"""Bytes of a stored file mapped at once to compute its digest."""


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """An instance made durable by :class:`FolderStorage`."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int
    sha256: str
    duplicate: bool = False
    attributes: dict[str, str] = field(default_factory=dict)


class DirectorySync:
    """fsync of one folder, group-committed across threads.

    A caller that renamed a file into the folder calls :meth:`sync` after the
    rename. A folder fsync that *started* after that rename covers it, so
    when several commits finish together one fsync serves them all; none
    returns before an fsync that covers its own rename has completed.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._state = threading.Lock()
        self._syncing = threading.Lock()
        self._renamed = 0
        self._synced = 0

    def sync(self) -> None:
        with self._state:
            self._renamed += 1
            ticket = self._renamed
        with self._syncing:
            if self._synced >= ticket:
                return  # an fsync that started after our rename has completed
            with self._state:
                covered = self._renamed
            directory = os.open(self.folder, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self._synced = covered


def _create(path: str) -> tuple[int, str]:
    """A new temporary file: O_EXCL on a name no other sink uses (the storage
    numbers them), so a leftover from a crash is never reused and nothing is
    overwritten; read access too, as commit() maps it to compute the digest."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), path


class StoreSink:
    """Receives one dataset's fragments into a temporary Part 10 file.

    A :class:`dicomnet.net.provider.FileDatasetSink`. A sink never raises from
    :meth:`write` (the codec's contract): the first OS error is recorded, the
    remaining fragments are dropped, and the handler answers a failure status.
    """

    def __init__(
        self,
        folder: Path | str,
        header: bytes,
        fsync: bool,
        temp_name: str,
        install: Callable[[StoreSink], Installed],
        *,
        digest: bool = True,
        opened: tuple[int, str] | None = None,
    ) -> None:
        folder_name = os.fspath(folder)
        self.fsync = fsync
        self.error: BaseException | None = None
        self.committing = False
        self.started = time.monotonic()
        """When the dataset began to arrive, for the C-STORE's duration."""
        self.size = 0
        self.hashes = digest
        self._sha256 = ""
        self._header_size = len(header)
        self._install = install
        self._fd = -1
        self._temp: str | None = None
        try:
            if opened is not None:  # created ahead of time by the storage
                self._fd, self._temp = opened
            else:
                self._fd, self._temp = _create(os.path.join(folder_name, temp_name))
            self._write_all(header)
        except OSError as exc:
            self._fail(exc)

    @property
    def temp_path(self) -> Path | None:
        return None if self._temp is None else Path(self._temp)

    def _write_all(self, data: Any) -> None:
        """os.write until every byte is in: a short write is not an error."""
        fd = self._fd
        written = os.write(fd, data)
        if written < len(data):
            view = memoryview(data).cast("B")
            while written < len(view):
                written += os.write(fd, view[written:])

    def write(self, fragment: Any) -> None:
        if self.error is not None:
            return
        try:
            self._write_all(fragment)
        except OSError as exc:
            self._fail(exc)
            return
        self.size += len(fragment)

    def fileno(self) -> int:
        """The temporary file, open at the end of what is written; -1 once it
        failed, was discarded or is being committed."""
        if self.error is not None or self.committing:
            return -1
        return self._fd

    def wrote(self, nbytes: int) -> None:
        """Count dataset bytes written straight to :meth:`fileno`."""
        self.size += nbytes

    def failed(self, error: OSError) -> None:
        """A write straight to :meth:`fileno` failed: as if :meth:`write` had."""
        if self.error is None:
            self._fail(error)

    @property
    def sha256(self) -> str:
        """The dataset's SHA-256 in hex, set by :meth:`commit` ("" without a digest)."""
        return self._sha256

    def _digest(self) -> None:
        """SHA-256 of the dataset as written, from the page cache through a map.

        Done at commit, in the commit's thread when there is one: hashlib
        releases the GIL, so the event loop goes on receiving meanwhile,
        and hashing the file hashes exactly what was written.
        """
        digest = hashlib.sha256()
        start = self._header_size
        end = start + self.size
        offset = 0
        while offset < end:  # in windows: mapped pages count in RSS until unmapped
            length = min(DIGEST_WINDOW, end - offset)
            with mmap.mmap(self._fd, length, access=mmap.ACCESS_READ, offset=offset) as mapped:
                with memoryview(mapped) as view:
                    digest.update(view[max(start - offset, 0) :])
            offset += length
        self._sha256 = digest.hexdigest()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.discard()

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def discard(self) -> None:
        """Close and delete the temporary file; nothing stays visible."""
        try:
            self._close()
        except OSError:
            pass
        if self._temp is not None:
            try:
                os.unlink(self._temp)
            except FileNotFoundError:
                pass
            self._temp = None

    def commit(self) -> Installed:
        """Digest, fsync and close the file, then hand it to the storage to install.

        With fsync or a digest it runs in a worker thread: fsync blocks for
        milliseconds, and hashing releases the GIL. On any failure the
        temporary file is gone when this raises.
        """
        if self.error is not None:
            raise self.error
        assert self._fd >= 0 and self._temp is not None
        try:
            if self.hashes:
                self._digest()
            if self.fsync:
                os.fsync(self._fd)
            self._close()
            installed = self._install(self)
        except BaseException:
            self.discard()
            raise
        self._temp = None  # installed: the name in .incoming is gone
        return installed


@dataclass(frozen=True, slots=True)
class Installed:
    """Where a committed file went, and whether an instance was already there."""

    path: Path
    duplicate: bool
    attributes: dict[str, str]


class Rejected(Exception):
    """The dataset cannot be stored as it is; answered with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class FolderStorage:
    """Stores every C-STORE into a folder, by study and series or flat.

    Parameters
    ----------
    folder : path
        Where instances go; created if missing.
    fsync : bool
        Make each instance durable before answering (default). Off trades the
        promise of a C-STORE Success for speed.
    digest : bool
        Compute each dataset's SHA-256 before answering (default; the archive
        indexes it to detect bit rot and partial copies). It is computed from
        the written file in the commit's worker thread, off the event loop.
        Off saves about 70 us of CPU per 128 KB, and ``StoredInstance.sha256``
        is then "".
    layout : "study" or "flat"
        ``study`` (the archive's) stores ``<Study UID>/<Series UID>/<SOP
        Instance UID>.dcm``, reading both UIDs from the dataset; a dataset
        without valid ones, or whose SOP Instance UID is not the command's, is
        refused with C000. ``flat`` (default) stores ``<SOP Instance UID>.dcm``.
    duplicates : "keep", "replace" or "reject"
        What an instance whose file exists already does: ``keep`` the first
        copy and answer Warning B000 (default), ``replace`` it and answer
        Success, or ``reject`` the new one with 0111 (Duplicate SOP Instance).
    prefetch : int
        Temporary files a thread keeps created ahead of time, so that file
        creation does not block the event loop (0: each sink creates its own;
        call :meth:`close` when done with more).
    attribute_tags : dict
        Tags (tag: keyword) read from each dataset at commit with the study
        layout and returned in ``StoredInstance.attributes``: the archive
        passes what its index keeps, so the header is read once.
    on_stored : async callable, optional
        ``on_stored(request, record)``, awaited once the instance is durable
        and before the answer: what else must hold before Success (an archive
        indexes the instance); it returns the status to answer. Without it
        the status is :meth:`status_of` the record.

    Temporary files live in ``folder/.incoming``; leftovers of a process that
    no longer runs are removed when a storage opens the folder.

    A :class:`dicomnet.net.provider.StoreProvider`: use
    ``listener.dataset_sink = storage.sink`` and
    ``listener.on_c_store(storage.handle)``, or :meth:`attach`.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        fsync: bool = True,
        digest: bool = True,
        layout: str = "flat",
        duplicates: str = "keep",
        attribute_tags: dict[int, str] | None = None,
        prefetch: int = 0,
        on_stored: Callable[[IncomingRequest, StoredInstance], Awaitable[int]] | None = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(
                f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, not {duplicates!r}"
            )
        self.folder = Path(folder)
        self.incoming = self.folder / INCOMING
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.digest = digest
        self.layout = layout
        self.duplicates = duplicates
        self.attribute_tags = {**_PLACEMENT_TAGS, **(attribute_tags or {})}
        self.on_stored = on_stored
        self._folder_name = os.fspath(self.folder)
        self._incoming_name = os.fspath(self.incoming)
        self._syncs = _DirectorySyncs()
        self._install_lock = threading.Lock()
        self._pid = os.getpid()
        self.stored: list[StoredInstance] = []
        self.keep_records = False
        self.observers: list[StoreObserver] = []
        """Told of every C-STORE answered (:mod:`dicomnet.services.store_events`)."""
        self._temp_names = itertools.count()
        self.prefetch = prefetch
        self._ready: collections.deque[tuple[int, str]] = collections.deque()
        self._pool_lock = threading.Lock()
        self._refilling = False
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None
        remove_leftovers(self.incoming)

    # -- temporary files created ahead of time ------------------------------------------
    def _temp_file(self) -> tuple[int, str] | None:
        """A temporary file created ahead of time, or None to create one now.

        Creating a file costs 100 to 400 us on a busy ext4, on the event loop
        that receives every association's data; with ``prefetch`` a thread
        keeps that many files ready instead.
        """
        if not self.prefetch:
            return None
        try:
            opened: tuple[int, str] | None = self._ready.popleft()
        except IndexError:
            opened = None
        with self._pool_lock:
            if self._refilling or self._closed:
                return opened
            self._refilling = True
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="dicomnet-tempfiles")
        self._pool.submit(self._fill)
        return opened

    def _fill(self) -> None:
        try:
            while len(self._ready) < self.prefetch and not self._closed:
                name = f"{self._pid}.{next(self._temp_names)}.part"
                self._ready.append(_create(os.path.join(self._incoming_name, name)))
        except OSError as exc:  # the sink will create its own and report the error
            log.warning("cannot create temporary files in %s: %s", self._incoming_name, exc)
        finally:
            with self._pool_lock:
                self._refilling = False

    def close(self) -> None:
        """Remove the temporary files created ahead of time."""
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        while self._ready:
            fd, path = self._ready.popleft()
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def attach(self, listener: Any) -> None:
        """Serve C-STORE on ``listener`` with this storage."""
        listener.dataset_sink = self.sink
        listener.on_c_store(self.handle)

    def sink(
        self, association: Any, context_id: int, command: dict[int, Any]
    ) -> DatasetSink | None:
        """The sink factory: a file sink for C-STORE datasets, None for others."""
        if command.get(COMMAND_FIELD) != C_STORE_RQ:
            return None
        instance_uid = command.get(AFFECTED_SOP_INSTANCE_UID)
        class_uid = command.get(AFFECTED_SOP_CLASS_UID)
        if not (isinstance(instance_uid, str) and is_valid_uid(instance_uid)):
            return _Refused(CANNOT_UNDERSTAND)
        if not (isinstance(class_uid, str) and is_valid_uid(class_uid)):
            return _Refused(CANNOT_UNDERSTAND)
        context = association.negotiated.contexts.get(context_id)
        if context is None or context.abstract_syntax != class_uid:
            return _Refused(DATASET_DOES_NOT_MATCH)
        header = encode_file_meta(
            class_uid,
            instance_uid,
            context.transfer_syntax,
            source_ae_title=source_ae_title(association),
        )
        temp_name = f"{instance_uid}.{self._pid}.{next(self._temp_names)}.part"
        return StoreSink(
            self._incoming_name,
            header,
            self.fsync,
            temp_name,
            functools.partial(self._install, instance_uid=instance_uid),
            digest=self.digest,
            opened=self._temp_file(),
        )

    # -- installing a committed file (in the commit's thread) ----------------------------
    def _install(self, sink: StoreSink, *, instance_uid: str) -> Installed:
        """Move a sealed temporary file to its place under the duplicate policy."""
        temp = os.fspath(sink.temp_path or "")
        attributes: dict[str, str] = {}
        directory = self._folder_name
        if self.layout == "study":
            try:
                attributes = read_file_attributes(temp, self.attribute_tags)
            except Exception as exc:  # pydicom raises many kinds on a malformed dataset
                raise Rejected(CANNOT_UNDERSTAND, f"dataset unreadable: {exc}") from exc
            study = attributes.get("StudyInstanceUID", "")
            series = attributes.get("SeriesInstanceUID", "")
            if attributes.get("SOPInstanceUID", "") != instance_uid:
                reason = "the dataset's SOP Instance UID is not the command's"
                raise Rejected(CANNOT_UNDERSTAND, reason)
            if not (is_valid_uid(study) and is_valid_uid(series)):
                raise Rejected(CANNOT_UNDERSTAND, "no valid Study and Series Instance UIDs")
            directory = self._make_folders(study, series)
        final = os.path.join(directory, f"{instance_uid}.dcm")
        duplicate = self._place(temp, final)
        if self.fsync and not (duplicate and self.duplicates != "replace"):
            self._syncs.sync(directory)
        return Installed(Path(final), duplicate, attributes)

    def _place(self, temp: str, final: str) -> bool:
        """Rename or link ``temp`` to ``final``; True when ``final`` existed."""
        if self.duplicates == "replace":
            existed = os.path.exists(final)
            os.replace(temp, final)
            return existed
        try:
            # A hard link fails atomically if the name exists, across processes
            # sharing the folder too; then the temporary name goes.
            os.link(temp, final)
        except FileExistsError:
            os.unlink(temp)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EXDEV):
                raise
            with self._install_lock:  # no hard links here: one process's threads at least
                if os.path.exists(final):
                    os.unlink(temp)
                    return True
                os.replace(temp, final)
                return False
        os.unlink(temp)
        return False

    def _make_folders(self, study: str, series: str) -> str:
        """The series folder, created durably: a new folder's parent is synced."""
        parent = self._folder_name
        for name in (study, series):
            path = os.path.join(parent, name)
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            else:
                if self.fsync:
                    self._syncs.sync(parent)
            parent = path
        return parent

    async def handle(self, request: IncomingRequest) -> int:
        """The C-STORE handler: commit the sink's file, run :attr:`on_stored`, answer."""
        started = dataset_started(request)
        outcome = await self.store(request)
        if isinstance(outcome, int):
            report_store(self.observers, request, outcome, None, started)
            return outcome
        if self.on_stored is None:
            status = self.status_of(outcome)
        else:
            status = await self.on_stored(request, outcome)
        report_store(self.observers, request, status, outcome, started)
        return status

    def status_of(self, record: StoredInstance) -> int:
        """The C-STORE status of a stored instance under the duplicate policy."""
        if not record.duplicate or self.duplicates == "replace":
            return SUCCESS
        # A copy kept: what is stored is not what was just sent (B000, "coercion").
        return WARNING if self.duplicates == "keep" else DUPLICATE_SOP_INSTANCE

    async def store(self, request: IncomingRequest) -> StoredInstance | int:
        """Make the request's instance durable: its record, or the failure status.

        For handlers that do more before answering (an archive indexes the
        instance); :meth:`handle` is this with the record reduced to a status
        by :meth:`status_of`.
        """
        sink = request.raw_dataset
        if isinstance(sink, _Refused):
            return sink.status
        if not isinstance(sink, StoreSink):
            # Collected in memory (no sink): write it the same way.
            sink = self._sink_from_memory(request)
            if isinstance(sink, _Refused):
                return sink.status
        uid = request.message.affected_sop_instance_uid
        if sink.error is not None:
            log.warning("C-STORE of %s failed: %s", uid, sink.error)
            return OUT_OF_RESOURCES
        sink.committing = True
        try:
            if sink.fsync or sink.hashes or self.layout == "study":
                try:
                    commit = asyncio.get_running_loop().run_in_executor(None, sink.commit)
                except BaseException:
                    sink.discard()
                    raise
                # CancelledError passes: the association ended; the commit
                # finishes in its thread and the instance, never
                # acknowledged, is either fully in place or gone.
                installed = await asyncio.shield(commit)
            else:
                # Without fsync, digest or a header to read, a commit is a close
                # and a rename, tens of microseconds: cheaper here than a thread.
                installed = sink.commit()
        except Rejected as exc:
            log.warning("C-STORE of %s refused: %s", uid, exc)
            return exc.status
        except OSError as exc:
            log.warning("C-STORE of %s failed: %s", uid, exc)
            return OUT_OF_RESOURCES  # ENOSPC, EDQUOT, EIO and the rest alike: A700
        record = StoredInstance(
            installed.path,
            request.message.affected_sop_class_uid,
            uid,
            request.transfer_syntax,
            sink.size,
            sink.sha256,
            duplicate=installed.duplicate,
            attributes=installed.attributes,
        )
        if self.keep_records:
            self.stored.append(record)
        return record

    def _sink_from_memory(self, request: IncomingRequest) -> DatasetSink | None:
        command = {
            COMMAND_FIELD: C_STORE_RQ,
            AFFECTED_SOP_CLASS_UID: request.message.affected_sop_class_uid,
            AFFECTED_SOP_INSTANCE_UID: request.message.affected_sop_instance_uid,
        }
        sink = self.sink(request.association, request.context_id, command)
        if isinstance(sink, StoreSink) and request.raw_dataset is not None:
            sink.write(memoryview(request.raw_dataset))
        return sink


class _DirectorySyncs:
    """One :class:`DirectorySync` per folder being synced, dropped when idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, tuple[DirectorySync, int]] = {}

    def sync(self, folder: str) -> None:
        with self._lock:
            syncer, users = self._active.get(folder, (None, 0))
            if syncer is None:
                syncer = DirectorySync(folder)
            self._active[folder] = (syncer, users + 1)
        try:
            syncer.sync()
        finally:
            with self._lock:
                syncer, users = self._active[folder]
                if users == 1:
                    del self._active[folder]
                else:
                    self._active[folder] = (syncer, users - 1)


def remove_leftovers(incoming: Path) -> int:
    """Delete temporary files of processes that no longer run; the count removed.

    A temporary name carries its writer's process id, so a storage opening a
    folder that other live processes share (``--workers``) leaves theirs alone.
    """
    removed = 0
    for path in incoming.glob("*.part"):
        try:
            pid = int(path.name.rsplit(".", 3)[-3])
        except (ValueError, IndexError):
            continue
        if _running(pid):
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed %d unfinished temporary files from %s", removed, incoming)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Refused:
    """A sink that drops a dataset the command already disqualified."""

    __slots__ = ("committing", "size", "started", "status")

    def __init__(self, status: int) -> None:
        self.status = status
        self.size = 0
        self.started = time.monotonic()
        self.committing = False

    def write(self, fragment: Any) -> None:
        self.size += len(fragment)

    def discard(self) -> None:
        """Nothing was kept."""
