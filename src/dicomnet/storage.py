"""The built-in C-STORE SCP: stream each dataset into a Part 10 file, durably.

Theory of operation
-------------------
When a C-STORE-RQ's command set completes, :meth:`FolderStorage.sink` opens a
temporary file in the destination folder and writes the preamble and a File
Meta group built from the command set and the presentation context. Each
dataset fragment is then written to it as it arrives (the codec hands over
views of the receive buffer), so a 2 GB dataset never sits in memory. When the
last fragment arrives, :meth:`FolderStorage.handle` makes the file durable in
the order of ``shared/durability.md``: flush, ``fsync(file)``, atomic
``rename``, ``fsync(directory)``; only then does it answer Success. On any
failure the temporary file is deleted and the answer is a failure status:
A700 (out of resources) for an OS error, A900 when the command does not match
the presentation context, C000 when the command cannot be understood.

The SOP Instance UID names the file only after validation (digits and dots,
at most 64 characters), so no peer value reaches a path unchecked. An instance
that is already stored is kept, not overwritten.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomnet.association import IncomingRequest
from dicomnet.part10 import encode_file_meta
from dicomnet.uids import is_valid_uid

__all__ = ["DirectorySync", "FolderStorage", "StoreSink", "StoredInstance"]

log = logging.getLogger("dicomnet.storage")

AFFECTED_SOP_CLASS_UID = 0x00000002
AFFECTED_SOP_INSTANCE_UID = 0x00001000
COMMAND_FIELD = 0x00000100
C_STORE_RQ = 0x0001

OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

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


class StoreSink:
    """Receives one dataset's fragments into a temporary Part 10 file.

    A sink never raises from :meth:`write` (the codec's contract): the first
    OS error is recorded, the remaining fragments are dropped, and the
    handler answers a failure status.
    """

    def __init__(
        self,
        folder: Path | str,
        header: bytes,
        final_name: str,
        fsync: bool,
        temp_name: str,
        *,
        digest: bool = True,
        directory_sync: DirectorySync | None = None,
    ) -> None:
        self.folder = folder
        folder_name = os.fspath(folder)
        self._final = os.path.join(folder_name, final_name)
        self.fsync = fsync
        self.error: BaseException | None = None
        self.committing = False
        self.size = 0
        self.hashes = digest
        self._sha256 = ""
        self._header_size = len(header)
        self._directory_sync = directory_sync
        self._fd = -1
        self._temp: str | None = None
        try:
            # O_EXCL on a name no other sink uses (the storage numbers them):
            # a leftover from a crash is never reused, nothing is overwritten.
            path = os.path.join(folder_name, temp_name)
            # Read access too: commit() maps the file to compute its digest.
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            self._temp = path
            self._write_all(header)
        except OSError as exc:
            self._fail(exc)

    @property
    def final_path(self) -> Path:
        return Path(self._final)

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

    def commit(self) -> bool:
        """fsync, rename into place, fsync the folder; False if already stored.

        With fsync or a digest it runs in a worker thread: fsync blocks for
        milliseconds, and hashing releases the GIL.
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
            if os.path.exists(self._final):
                self.discard()
                return False
            os.replace(self._temp, self._final)
            self._temp = None
            if self.fsync:
                if self._directory_sync is not None:
                    self._directory_sync.sync()
                else:
                    directory = os.open(os.fspath(self.folder), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        os.fsync(directory)
                    finally:
                        os.close(directory)
        except BaseException:
            self.discard()
            raise
        return True


class FolderStorage:
    """Stores every C-STORE into a folder as ``<SOP Instance UID>.dcm``.

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

    Use ``listener.dataset_sink = storage.sink`` and
    ``listener.on_c_store(storage.handle)``, or :meth:`attach`.
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, fsync: bool = True, digest: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.digest = digest
        self._folder_name = os.fspath(self.folder)
        self._directory_sync = DirectorySync(self._folder_name)
        self._pid = os.getpid()
        self.stored: list[StoredInstance] = []
        self.keep_records = False
        self._temp_names = itertools.count()

    def attach(self, listener: Any) -> None:
        """Serve C-STORE on ``listener`` with this storage."""
        listener.dataset_sink = self.sink
        listener.on_c_store(self.handle)

    def sink(self, association: Any, context_id: int, command: dict[int, Any]) -> Any:
        """The Assembler's ``on_command`` hook: a file sink for C-STORE datasets."""
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
            source_ae_title=getattr(association, "calling_ae_title", ""),
        )
        final_name = f"{instance_uid}.dcm"
        temp_name = f".{final_name}.{self._pid}.{next(self._temp_names)}.part"
        return StoreSink(
            self._folder_name,
            header,
            final_name,
            self.fsync,
            temp_name,
            digest=self.digest,
            directory_sync=self._directory_sync,
        )

    async def handle(self, request: IncomingRequest) -> int:
        """The C-STORE handler: commit the sink's file, then answer."""
        outcome = await self.store(request)
        return outcome if isinstance(outcome, int) else 0x0000

    async def store(self, request: IncomingRequest) -> StoredInstance | int:
        """Make the request's instance durable: its record, or the failure status.

        For handlers that do more before answering (an archive indexes the
        instance); :meth:`handle` is this with the record reduced to Success.
        """
        sink = request.raw_dataset
        if isinstance(sink, _Refused):
            return sink.status
        if not isinstance(sink, StoreSink):
            # Collected in memory (no sink): write it the same way.
            sink = self._sink_from_memory(request)
            if isinstance(sink, _Refused):
                return sink.status
        if sink.error is not None:
            log.warning(
                "C-STORE of %s failed: %s", request.message.affected_sop_instance_uid, sink.error
            )
            return OUT_OF_RESOURCES
        sink.committing = True
        try:
            if sink.fsync or sink.hashes:
                try:
                    commit = asyncio.get_running_loop().run_in_executor(None, sink.commit)
                except BaseException:
                    sink.discard()
                    raise
                # CancelledError passes: the association ended; the commit
                # finishes in its thread and the instance, never
                # acknowledged, is either fully in place or gone.
                created = await asyncio.shield(commit)
            else:
                # Without fsync or digest a commit is a close and a rename,
                # tens of microseconds: cheaper here than a trip to a thread.
                created = sink.commit()
        except OSError as exc:
            log.warning("C-STORE of %s failed: %s", request.message.affected_sop_instance_uid, exc)
            return OUT_OF_RESOURCES  # ENOSPC, EDQUOT, EIO and the rest alike: A700
        record = StoredInstance(
            sink.final_path,
            request.message.affected_sop_class_uid,
            request.message.affected_sop_instance_uid,
            request.transfer_syntax,
            sink.size,
            sink.sha256,
            duplicate=not created,
        )
        if self.keep_records:
            self.stored.append(record)
        return record

    def _sink_from_memory(self, request: IncomingRequest) -> Any:
        command = {
            COMMAND_FIELD: C_STORE_RQ,
            AFFECTED_SOP_CLASS_UID: request.message.affected_sop_class_uid,
            AFFECTED_SOP_INSTANCE_UID: request.message.affected_sop_instance_uid,
        }
        sink = self.sink(request.association, request.context_id, command)
        if isinstance(sink, StoreSink) and request.raw_dataset is not None:
            sink.write(memoryview(request.raw_dataset))
        return sink


class _Refused:
    """A sink that drops a dataset the command already disqualified."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status

    def write(self, fragment: Any) -> None:
        return None
