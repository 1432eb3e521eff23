"""A Modality Worklist SCP (PS3.4 K) served from a folder of worklist items.

The source
----------
One file per Scheduled Procedure Step in a folder: a Part 10 file (``.dcm``
or ``.wl``, as DCMTK's wlmscpfs keeps them) or a DICOM JSON file
(``.json``, PS3.18 F), each holding the patient, visit and request
attributes and a Scheduled Procedure Step Sequence; a file without that
sequence is not an item. Other files are ignored. Files are read at every
query, so adding, changing or removing an item takes effect at once; one that
cannot be read is logged and skipped.

Matching
--------
Every key of the query is matched with :func:`dicomnet.dataset.matching.matches`
(wildcards, date and time ranges, UID lists, PN case-insensitive). A
sequence key with an item (Scheduled Procedure Step Sequence) matches when
one item of the worklist item's sequence matches every key of the query's
item; that is the sequence matching worklist queries rely on (Modality,
Scheduled Station AE Title, Scheduled Procedure Step Start Date inside the
sequence). Each response carries the requested keys, values from the item,
and the matching sequence items with the requested sub-keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dicomnet.core.status import PENDING
from dicomnet.core.uids import MODALITY_WORKLIST_FIND
from dicomnet.dataset.matching import key_text, matches
from dicomnet.net.association import IncomingRequest, Reply

__all__ = ["WorklistProvider", "item_matches"]

log = logging.getLogger("dicomnet.services.worklist")

SKIPPED = ("SpecificCharacterSet", "QueryRetrieveLevel")


def _text(value: Any) -> str | list[str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return str(value)


def item_matches(query: Any, item: Any) -> bool:
    """Whether a worklist item (or sequence item) satisfies every key of ``query``."""
    for element in query:
        if element.keyword in SKIPPED:
            continue
        stored = item.get(element.tag)
        if element.VR == "SQ":
            keys = list(element.value or [])
            if not keys or not any(e.value not in (None, "", []) for e in keys[0]):
                continue  # an empty sequence, or an item of return keys only
            candidates = list(stored.value or []) if stored is not None else []
            if not any(item_matches(keys[0], candidate) for candidate in candidates):
                return False
            continue
        key = key_text(element.value)
        if not matches(key, element.VR, _text(stored.value) if stored is not None else None):
            return False
    return True


def _response(query: Any, item: Any) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    response = Dataset()
    if "SpecificCharacterSet" in item:
        response.SpecificCharacterSet = item.SpecificCharacterSet
    for element in query:
        if element.keyword == "SpecificCharacterSet":
            continue
        stored = item.get(element.tag)
        if element.VR == "SQ":
            keys = list(element.value or [])
            sub_items = list(stored.value or []) if stored is not None else []
            if keys:
                sub_items = [
                    _response(keys[0], sub) for sub in sub_items if item_matches(keys[0], sub)
                ]
            response.add_new(element.tag, "SQ", Sequence(sub_items))
        elif stored is not None:
            response.add(stored)
        else:
            response.add_new(element.tag, element.VR, None)
    return response


class WorklistProvider:
    """Answers worklist C-FINDs from the items in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def attach(self, listener: Any) -> None:
        listener.on_c_find(self.handle_find, models=(MODALITY_WORKLIST_FIND,))

    def items(self) -> list[Any]:
        """Every readable item in the folder, in file name order."""
        from pydicom import dcmread
        from pydicom.dataset import Dataset

        found = []
        for path in sorted(self.folder.iterdir()):
            suffix = path.suffix.lower()
            if suffix not in (".json", ".dcm", ".wl"):
                continue
            try:
                if suffix == ".json":
                    ds = Dataset.from_json(path.read_text())
                else:
                    ds = dcmread(path, force=True)  # with or without File Meta
                if "ScheduledProcedureStepSequence" not in ds:
                    # force=True reads any bytes as some dataset; an item
                    # without a scheduled step would match every query
                    raise ValueError("no Scheduled Procedure Step Sequence")
            except Exception as exc:  # a bad file must not stop the worklist
                log.warning("worklist item %s skipped: %s", path, exc)
                continue
            found.append(ds)
        return found

    async def handle_find(self, request: IncomingRequest) -> AsyncIterator[Reply]:
        query = request.dataset
        for item in await asyncio.to_thread(self.items):
            if request.cancelled:
                return
            if item_matches(query, item):
                yield Reply(PENDING, _response(query, item))
