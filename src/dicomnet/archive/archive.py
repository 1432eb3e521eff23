"""The embedded archive: a folder of Part 10 files and its SQLite index, served
as storage SCP and Query/Retrieve SCP (C-FIND, C-MOVE, C-GET).

Theory of operation
-------------------
A C-STORE goes through :class:`dicomnet.services.storage.FolderStorage` (streamed to a
temporary file, fsync, rename, directory fsync), then its attributes are read
back from the file's header and its row is group-committed to the index
(:class:`dicomnet.archive.index.ArchiveIndex`); only then is Success answered, as
``shared/durability.md`` orders. If indexing fails, a file this request
created is removed again and the answer is A700, so nothing unacknowledged
stays visible and nothing acknowledged is missing from the index.

Storage commitment (N-ACTION) is granted for instances the index holds whose
files are whole (:mod:`dicomnet.services.commitment`).

Queries are answered from the index at the Query/Retrieve Level the
identifier names; C-MOVE and C-GET send the files of every instance below
the matching entities.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dicomnet.archive.index import (
    ATTRIBUTES,
    COMPUTED,
    LEVELS,
    TAGS,
    UNIQUE_KEY,
    ArchiveIndex,
    IndexEntry,
    matching_keys,
)
from dicomnet.archive.relational import extended_answer, hierarchical_problem, relational_agreed
from dicomnet.core.status import DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES, PENDING
from dicomnet.core.uids import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
)
from dicomnet.net.association import IncomingRequest, Reply
from dicomnet.net.provider import DatasetSink, StoreObserver
from dicomnet.services.storage import PREFETCH, FolderStorage, StoredInstance
from dicomnet.services.store_events import source_ae_title

__all__ = ["INDEX_NAME", "Archive"]

log = logging.getLogger("dicomnet.archive.archive")

INDEX_NAME = "index.sqlite"
"""The index's file name inside the archive folder."""


class Archive:
    """Stores, indexes and serves the instances of one folder.

    A :class:`dicomnet.net.provider.StoreProvider`: C-STORE is its
    :class:`~dicomnet.services.storage.FolderStorage`'s, with indexing as the
    storage's ``on_stored`` step.

    Parameters
    ----------
    folder : path
        The archive folder; the index is ``folder/index.sqlite``.
    fsync : bool
        Make each instance durable before answering (default).
    index : str, optional
        A ``postgresql://`` URL: index into that database instead of
        ``folder/index.sqlite``, so that listeners on several machines sharing
        the folder share one index (``docs/deployment.md``).
    duplicates : "keep", "replace" or "reject"
        The policy for a SOP Instance UID stored already
        (:class:`dicomnet.services.storage.FolderStorage`); the index decides across
        folders, so a second copy filed under another study counts too.
    digest : bool
        Index each instance's SHA-256, computed by the codec while it writes
        the dataset (default), for ``dicomnet archive verify`` to find bit rot
        and partial copies. Off saves that CPU (about 1 ms per MB on one
        core), for a folder on a file system that checksums its own blocks;
        verify then checks sizes and headers only.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        fsync: bool = True,
        duplicates: str = "keep",
        index: str | None = None,
        digest: bool = True,
    ) -> None:
        # Absolute: the index records each file's path, which must not depend
        # on the working directory of whoever reads it (C-MOVE, verify, a
        # listener on another machine sharing the folder at the same mount).
        self.folder = Path(folder).absolute()
        self.storage = FolderStorage(
            self.folder,
            fsync=fsync,
            digest=digest,
            layout="study",
            duplicates=duplicates,
            attribute_tags=TAGS,
            prefetch=PREFETCH,
            on_stored=self._index,
        )
        self.index = ArchiveIndex(index or self.folder / INDEX_NAME, durable=fsync)

    def attach(
        self, listener: Any, *, commitment_destinations: dict[str, Any] | None = None
    ) -> None:
        """Serve C-STORE, C-FIND, C-MOVE, C-GET and storage commitment on ``listener``.

        Storage commitment reports go back on the requesting association,
        or on a new one to the requester's entry in ``commitment_destinations``.
        """
        from dicomnet.services.commitment import CommitmentProvider

        self.storage.attach(listener)
        listener.on_c_find(self.handle_find)
        listener.on_c_move(self.select)
        listener.on_c_get(self.select)
        listener.support(PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET)
        # relational queries and retrieval, when asked for (archive/relational.py)
        listener.policy = dataclasses.replace(listener.policy, sop_class_extended=extended_answer)
        CommitmentProvider(
            self.index.path_of,
            ae_title=listener.ae_title,
            destinations=commitment_destinations,
        ).attach(listener)

    async def close(self) -> None:
        """Finish every store under way (file and row), then close."""
        await self.storage.drain()
        self.storage.close()
        await self.index.close()

    # -- C-STORE -------------------------------------------------------------------------
    @property
    def observers(self) -> list[StoreObserver]:
        """The storage's: told of every C-STORE answered."""
        return self.storage.observers

    def sink(
        self, association: Any, context_id: int, command: dict[int, Any]
    ) -> DatasetSink | None:
        """The storage's sink factory (:meth:`FolderStorage.sink`)."""
        return self.storage.sink(association, context_id, command)

    async def handle(self, request: IncomingRequest) -> int:
        """Durable file, then index row (:meth:`_index`), then the answer."""
        return await self.storage.handle(request)

    async def _index(self, request: IncomingRequest, outcome: StoredInstance) -> int:
        """The storage's ``on_stored`` step: the index row, committed before the
        answer; a file this request created goes again if indexing fails."""
        replace = self.storage.duplicates == "replace"
        entry = IndexEntry(
            str(outcome.path),
            outcome.size,
            outcome.transfer_syntax,
            outcome.sha256,
            {keyword: outcome.attributes.get(keyword, "") for keyword in ATTRIBUTES},
            source_ae_title(request.association),
        )
        try:
            previous = await self.index.add(entry, replace=replace)
        except Exception as exc:  # the row is not committed: undo what this request made
            log.warning("indexing %s failed: %s", outcome.sop_instance_uid, exc)
            if not outcome.duplicate:
                _remove(outcome.path)
            return OUT_OF_RESOURCES
        if previous is None or previous == entry.path:
            return self.storage.status_of(outcome)
        # The index holds this instance under another study or series folder.
        if replace:
            _remove(Path(previous))
            return self.storage.status_of(outcome)
        if not outcome.duplicate:
            _remove(outcome.path)  # the first copy stays the indexed one
        return self.storage.status_of(_as_duplicate(outcome))

    # -- C-FIND --------------------------------------------------------------------------
    async def handle_find(self, request: IncomingRequest) -> AsyncIterator[Reply]:
        """One pending response per matching entity at the requested level."""
        identifier = request.dataset
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in LEVELS:
            yield Reply(DATASET_DOES_NOT_MATCH)
            return
        problem = _not_hierarchical(request, identifier, level)
        if problem is not None:
            yield Reply(DATASET_DOES_NOT_MATCH, None, {"error_comment": problem[:64]})
            return
        rows = await self.index.find(level, matching_keys(identifier))
        for row in rows:
            if request.cancelled:
                return
            yield Reply(PENDING, _response(identifier, row, level))

    # -- C-MOVE and C-GET ----------------------------------------------------------------
    async def select(self, request: IncomingRequest) -> list[str] | int | Reply:
        """The files of every instance below the matching entities."""
        identifier = request.dataset
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in LEVELS:
            return DATASET_DOES_NOT_MATCH
        problem = _not_hierarchical(request, identifier, level)
        if problem is not None:
            return Reply(DATASET_DOES_NOT_MATCH, None, {"error_comment": problem[:64]})
        return await self.index.instances(level, matching_keys(identifier))


def _not_hierarchical(request: IncomingRequest, identifier: Any, level: str) -> str | None:
    """Why a request needs relational service that was not negotiated, or None."""
    model = request.abstract_syntax
    if relational_agreed(request.association.negotiated, model):
        return None
    return hierarchical_problem(identifier, level, model)


def _as_duplicate(record: StoredInstance) -> StoredInstance:
    """The record marked as a second copy of an instance stored already."""
    return dataclasses.replace(record, duplicate=True)


def _remove(path: Path) -> None:
    """Delete a file this request installed but must not keep."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("cannot remove %s", path)


def _response(identifier: Any, row: dict[str, Any], level: str) -> Any:
    """The requested keys, filled from the matched entity (PS3.4 C.4.1.1.3.2)."""
    from pydicom.dataset import Dataset

    response = Dataset()
    if row.get("SpecificCharacterSet"):  # the set of what it carries, not the request's
        response.SpecificCharacterSet = row["SpecificCharacterSet"].split("\\")
    response.QueryRetrieveLevel = level
    wanted = [element.keyword for element in identifier] + [UNIQUE_KEY[level]]
    for keyword in wanted:
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        if keyword in row and (keyword in ATTRIBUTES or keyword in COMPUTED):
            value = row[keyword]
            setattr(response, keyword, value if value != [] else "")
        elif keyword in identifier:
            element = identifier[keyword]  # a key the index does not hold: returned empty
            response.add_new(element.tag, element.VR, [] if element.VR == "SQ" else None)
    return response
