"""The built-in C-STORE SCP: stream each dataset into a Part 10 file, durably.

Theory of operation
-------------------
When a C-STORE-RQ's command set completes, :meth:`FolderStorage.sink` opens an
unnamed file (:class:`dicomnet.services.commit.IncomingFile`) in ``.incoming``
inside the storage folder and writes the preamble and a File Meta group built
from the command set and the presentation context. The codec's pump then
writes each dataset fragment into it straight from the receive buffer, hashing
it on the way, so a 2 GB dataset never sits in memory and is hashed once.
When the last fragment arrives, :meth:`FolderStorage.store` walks the
dataset's start strictly for its UIDs and indexed attributes (the first bytes
the codec kept in memory; the file's page-cache pages when they lie further),
and publishes the file under its final name in the order of
``shared/durability.md`` (:class:`dicomnet.services.commit.Publisher`): under
fsync, data synced, name linked, folder synced, group-committed across
instances; only then is Success answered. On any failure the incoming file is
dropped and the answer is a failure status: A700 (out of resources) for an OS
error, A900 when the command does not match the presentation context, C000
when the command or the dataset's UIDs cannot be understood.

Files are named only from validated UIDs (digits and dots, at most 64
characters), so no peer value reaches a path unchecked. With the study layout
the Study and Series Instance UIDs are read from the dataset, and must be
valid too. In either layout the dataset must parse in the negotiated
transfer syntax (:func:`dicomnet.dataset.attributes.read_stored_attributes`)
and carry the command's SOP Instance UID and SOP Class UID before Success;
otherwise C000 (A900 for another SOP Class).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Awaitable, Callable
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
from dicomnet.dataset.attributes import (
    UnreadableDataset,
    read_head_attributes,
    read_stored_attributes,
)
from dicomnet.dataset.part10 import encode_file_meta
from dicomnet.net.association import IncomingRequest
from dicomnet.net.provider import DatasetSink, StoreObserver
from dicomnet.services.commit import IncomingFile, Publisher
from dicomnet.services.store_events import dataset_started, report_store, source_ae_title

__all__ = [
    "DUPLICATE_POLICIES",
    "LAYOUTS",
    "PREFETCH",
    "FolderStorage",
    "Rejected",
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
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
}

DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"

PREFETCH = 32
"""Incoming files a listener's storage keeps created ahead (``prefetch``): the
filler thread is woken once per half of them taken, so a larger reserve wakes it
less often; each is an unnamed file that costs an inode until used."""

_IDENTITY_TAGS = {0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID"}
"""What the flat layout reads of a dataset: enough to know it parses and is the command's."""


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
        Make each instance durable before answering (default): data, name and
        folder synced, group-committed across instances
        (:class:`dicomnet.services.commit.Publisher`). Off trades the promise
        of a C-STORE Success for speed.
    digest : bool
        Record each dataset's SHA-256 (default; the archive indexes it to
        detect bit rot and partial copies). The compiled codec computes it
        while it writes the fragments; off saves that CPU, and
        ``StoredInstance.sha256`` is then "".
    layout : "study" or "flat"
        ``study`` (the archive's) stores ``<Study UID>/<Series UID>/<SOP
        Instance UID>.dcm``, reading both UIDs from the dataset; a dataset
        without valid ones, or whose SOP Instance UID is not the command's, is
        refused with C000. ``flat`` (default) stores ``<SOP Instance UID>.dcm``.
    duplicates : "keep", "replace" or "reject"
        What an instance whose file exists already does: ``keep`` the first
        copy and answer Warning B000 (default), ``replace`` it and answer
        Success, or ``reject`` the new one with 0111 (Duplicate SOP Instance).
    attribute_tags : dict
        Tags (tag: keyword) read from each dataset with the study layout and
        returned in ``StoredInstance.attributes``: the archive passes what its
        index keeps, so the header is read once.
    prefetch : int
        Incoming files a thread keeps created ahead of time, so that file
        creation does not block the event loop (0: each is created when its
        command arrives; call :meth:`close` when done with more).
    on_stored : async callable, optional
        ``on_stored(request, record)``, awaited once the instance is durable
        and before the answer: what else must hold before Success (an archive
        indexes the instance); it returns the status to answer. Without it
        the status is :meth:`status_of` the record.

    Notes
    -----
    Incoming files live in ``folder/.incoming`` (unnamed where the file system
    allows it); named leftovers of a process that no longer runs are removed
    when a storage opens the folder.

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
        self._units: set[asyncio.Task[int]] = set()
        self.publisher = Publisher(
            os.fspath(self.folder),
            fsync=fsync,
            replace=duplicates == "replace",
            prefetch=prefetch,
        )
        self.stored: list[StoredInstance] = []
        self.keep_records = False
        self.observers: list[StoreObserver] = []
        """Told of every C-STORE answered (:mod:`dicomnet.services.store_events`)."""
        self.read_only = False
        """The folder refused a write with EROFS and has not taken one since (metrics)."""
        remove_leftovers(self.incoming)

    def close(self) -> None:
        """Stop the committer and filler threads (after :meth:`drain`)."""
        self.publisher.close()

    async def drain(self) -> None:
        """Wait for every store under way (file, ``on_stored``, answer decided)."""
        while self._units:
            await asyncio.gather(*self._units, return_exceptions=True)
        await self.publisher.drain()

    def attach(self, listener: Any) -> None:
        """Serve C-STORE on ``listener`` with this storage."""
        listener.dataset_sink = self.sink
        listener.on_c_store(self.handle)
        if self not in listener.observers:  # told of C-STOREs refused before the handler
            listener.observers.append(self)

    def request_refused(self, association: Any, request: IncomingRequest, status: int) -> None:
        """A listener observer: a C-STORE refused before its handler ran.

        The request's own validation (an invalid SOP Instance UID: C000; a
        SOP Class other than the context's: A900, PS3.4 B.2.3) answers it
        without the handler, yet it is a C-STORE answered like any other, and
        the attempts a hostile peer makes: the observers (event log, metrics)
        hear of it.
        """
        if getattr(request.message, "command_field", None) == C_STORE_RQ:
            report_store(self.observers, request, status, None, dataset_started(request))

    def sink(
        self, association: Any, context_id: int, command: dict[int, Any]
    ) -> DatasetSink | None:
        """The sink factory: an incoming file for C-STORE datasets, None for others."""
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
        try:
            return self.publisher.create(header, time.monotonic(), self.digest)
        except OSError as exc:  # the dataset is received and dropped; the answer is A700
            self._os_error(instance_uid, exc)
            return _Refused(OUT_OF_RESOURCES, exc)

    async def handle(self, request: IncomingRequest) -> int:
        """The C-STORE handler: publish the file, run :attr:`on_stored`, answer.

        These steps are one unit (``shared/durability.md`` rule 14): they run
        in a task of their own, which the end of the association (an abort, a
        reset, a release, shutdown) does not cancel, so an instance whose last
        fragment arrived ends with its file and its ``on_stored`` step (the
        archive's index row) both done, or, on failure, neither.
        :meth:`drain` waits for every unit.
        """
        unit = asyncio.get_running_loop().create_task(self._unit(request))
        self._units.add(unit)
        unit.add_done_callback(self._units.discard)
        return await asyncio.shield(unit)

    async def _unit(self, request: IncomingRequest) -> int:
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
        by :meth:`status_of`. The incoming file is published or discarded
        when this returns, whatever happened.
        """
        sink = request.raw_dataset
        if isinstance(sink, _Refused):
            return sink.status
        if not isinstance(sink, IncomingFile):
            # Collected in memory (no sink): write it the same way.
            sink = self._sink_from_memory(request)
            if isinstance(sink, _Refused):
                return sink.status
        uid = request.message.affected_sop_instance_uid
        try:
            if sink.error is not None:
                self._os_error(uid, sink.error)
                return OUT_OF_RESOURCES
            sink.committing = True
            record = await self._publish(sink, request, uid)
        except Rejected as exc:
            log.warning("C-STORE of %s refused: %s", uid, exc)
            return exc.status
        except OSError as exc:
            self._os_error(uid, exc)
            return OUT_OF_RESOURCES  # ENOSPC, EDQUOT, EIO, EROFS and the rest alike: A700
        finally:
            sink.discard()
        if self.read_only:
            self.read_only = False
            log.warning("%s takes writes again", self.folder)
        return record

    def _os_error(self, uid: str, exc: OSError) -> None:
        """Log a failed store; a read-only folder once, loudly, until it takes writes again."""
        if exc.errno != errno.EROFS:
            log.warning("C-STORE of %s failed: %s", uid, exc)
            return
        if not self.read_only:
            self.read_only = True
            log.error(
                "%s is read-only (%s): every C-STORE is answered A700 until it takes writes again",
                self.folder,
                exc,
            )

    async def _publish(
        self, sink: IncomingFile, request: IncomingRequest, uid: str
    ) -> StoredInstance:
        # The dataset must parse in the negotiated syntax before Success (C000 otherwise);
        # read strictly from the file's page-cache pages, off the loop for a deflated one.
        wanted = self.attribute_tags if self.layout == "study" else _IDENTITY_TAGS
        if request.transfer_syntax == DEFLATED_SYNTAX:
            attributes = await asyncio.get_running_loop().run_in_executor(
                None, self._attributes, sink, wanted, request.transfer_syntax
            )
        else:
            attributes = self._attributes(sink, wanted, request.transfer_syntax)
        if attributes.get("SOPInstanceUID", "") != uid:
            reason = "the dataset's SOP Instance UID is not the command's"
            raise Rejected(CANNOT_UNDERSTAND, reason)
        class_uid = request.message.affected_sop_class_uid
        if attributes.get("SOPClassUID", class_uid) != class_uid:  # PS3.4 B.2.3
            reason = "the dataset's SOP Class UID is not the command's"
            raise Rejected(DATASET_DOES_NOT_MATCH, reason)
        names: tuple[str, ...] = ()
        if self.layout == "study":
            study = attributes.get("StudyInstanceUID", "")
            series = attributes.get("SeriesInstanceUID", "")
            if not (is_valid_uid(study) and is_valid_uid(series)):
                raise Rejected(CANNOT_UNDERSTAND, "no valid Study and Series Instance UIDs")
            names = (study, series)
        sha256 = ""
        if self.digest:  # the codec's, or (a codec that cannot hash) read back off the loop
            sha256 = sink.digest.hex() or await asyncio.get_running_loop().run_in_executor(
                None, sink.sha256
            )
        folder = self.publisher.folder(*names)
        try:
            published = await self.publisher.publish(sink, os.path.join(folder, f"{uid}.dcm"))
        except FileNotFoundError:
            if sink.closed or not names:
                raise
            self.publisher.forget(folder)  # removed behind our back (maintenance): again
            folder = self.publisher.folder(*names)
            published = await self.publisher.publish(sink, os.path.join(folder, f"{uid}.dcm"))
        record = StoredInstance(
            Path(published.path),
            request.message.affected_sop_class_uid,
            uid,
            request.transfer_syntax,
            sink.size,
            sha256,
            duplicate=published.duplicate,
            attributes=attributes,
        )
        if self.keep_records:
            self.stored.append(record)
        return record

    def _attributes(
        self, sink: IncomingFile, wanted: dict[int, str], syntax: str
    ) -> dict[str, str]:
        """The ``wanted`` attributes of the written dataset, read strictly: from the
        head the codec kept in memory, else from the file's page-cache pages."""
        try:
            found = read_head_attributes(
                sink.head, syntax, wanted, whole=len(sink.head) >= sink.size
            )
            if found is not None:
                return found
            return read_stored_attributes(f"/proc/self/fd/{sink.fileno()}", wanted)
        except UnreadableDataset as exc:
            raise Rejected(CANNOT_UNDERSTAND, f"dataset unreadable: {exc}") from exc

    def _sink_from_memory(self, request: IncomingRequest) -> DatasetSink | None:
        command = {
            COMMAND_FIELD: C_STORE_RQ,
            AFFECTED_SOP_CLASS_UID: request.message.affected_sop_class_uid,
            AFFECTED_SOP_INSTANCE_UID: request.message.affected_sop_instance_uid,
        }
        sink = self.sink(request.association, request.context_id, command)
        if isinstance(sink, IncomingFile) and request.raw_dataset is not None:
            sink.write(memoryview(request.raw_dataset))
        return sink


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

    __slots__ = ("committing", "error", "size", "started", "status")

    def __init__(self, status: int, error: OSError | None = None) -> None:
        self.status = status
        self.error = error
        self.size = 0
        self.started = time.monotonic()
        self.committing = False

    def write(self, fragment: Any) -> None:
        self.size += len(fragment)

    def discard(self) -> None:
        """Nothing was kept."""
