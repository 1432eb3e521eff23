"""What a C-STORE SCU sends: a Dataset, raw dataset bytes, or a Part 10 file.

A Part 10 file whose transfer syntax the association accepted for its SOP
class is sent as its own bytes: its File Meta group is read without pydicom,
the file is mapped into memory, and the dataset part goes out as views of the
map (no decode, no re-encode, no copy). When no context carries the file's
own transfer syntax, an uncompressed dataset is converted with pydicom to one
that was accepted (implicit or explicit VR little endian, explicit big endian,
deflated); anything else is a clear error naming the transfer syntax.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dicomnet.core.negotiation import Negotiated
from dicomnet.core.uids import UNCOMPRESSED_TRANSFER_SYNTAXES
from dicomnet.dataset.encoding import decode_dataset, encode_dataset
from dicomnet.dataset.part10 import FIRST_READ, FileMeta, parse_file_meta
from dicomnet.errors import DicomNetError

__all__ = [
    "MAX_STORAGE_CONTEXTS",
    "NoAcceptedContext",
    "PreparedStore",
    "prepare_store",
    "storage_contexts",
]

MAX_STORAGE_CONTEXTS = 127
"""Presentation contexts left for storage: 128 per association, one for Verification,
which :func:`dicomnet.net.client.connect` always proposes."""


class NoAcceptedContext(DicomNetError, ValueError):
    """No accepted presentation context can carry this instance."""


@dataclass(slots=True)
class PreparedStore:
    """A dataset ready to send: its context, UIDs and bytes (maybe a file map)."""

    context_id: int
    sop_class_uid: str
    sop_instance_uid: str
    data: Any
    size: int
    _map: mmap.mmap | None = None

    def close(self) -> None:
        """Release the file map once the C-STORE has completed."""
        if self._map is not None:
            view = self.data
            if isinstance(view, memoryview):
                view.release()
            try:
                self._map.close()
            except BufferError:  # a transport still holds a view; the GC closes it
                pass
            self._map = None


def _choose(negotiated: Negotiated, sop_class: str, transfer_syntax: str) -> tuple[int, str]:
    """The context for the instance's own syntax, else one we can convert to."""
    exact = None
    convertible = None
    for context_id, context in negotiated.contexts.items():
        if context.abstract_syntax != sop_class or not context.scu_role:
            continue  # a C-GET SCP stores only where the requestor took the SCP role
        if context.transfer_syntax == transfer_syntax:
            exact = context_id
            break
        if convertible is None and context.transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
            convertible = context_id
    if exact is not None:
        return exact, transfer_syntax
    if convertible is not None and transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
        return convertible, negotiated.contexts[convertible].transfer_syntax
    offered = sorted(
        {
            c.transfer_syntax
            for c in negotiated.contexts.values()
            if c.abstract_syntax == sop_class and c.scu_role
        }
    )
    if not offered:
        raise NoAcceptedContext(
            f"the peer accepted no presentation context for SOP class {sop_class}"
        )
    raise NoAcceptedContext(
        f"cannot send transfer syntax {transfer_syntax} for {sop_class}: the peer accepted "
        f"only {', '.join(offered)}, and {transfer_syntax} is not one dicomnet converts"
    )


def prepare_store(
    negotiated: Negotiated,
    source: Any,
    *,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    transfer_syntax: str | None = None,
) -> PreparedStore:
    """Turn what the user gave ``store()`` into bytes on an accepted context.

    Parameters
    ----------
    source : pydicom.Dataset, bytes-like, or path
        Raw bytes need ``sop_class_uid``, ``sop_instance_uid`` and
        ``transfer_syntax``.
    """
    if isinstance(source, (str, os.PathLike)):
        # A bulk_store.StoreJob carries the meta group it already read.
        return _prepare_file(negotiated, os.fspath(source), getattr(source, "file_meta", None))
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not (sop_class_uid and sop_instance_uid and transfer_syntax):
            raise ValueError(
                "raw dataset bytes need sop_class_uid, sop_instance_uid and transfer_syntax"
            )
        context_id, target = _choose(negotiated, sop_class_uid, transfer_syntax)
        data: Any = source
        if target != transfer_syntax:
            data = encode_dataset(decode_dataset(source, transfer_syntax), target)
        return PreparedStore(context_id, sop_class_uid, sop_instance_uid, data, len(data))
    return _prepare_dataset(negotiated, source)


def _prepare_dataset(negotiated: Negotiated, dataset: Any) -> PreparedStore:
    sop_class = str(dataset.SOPClassUID)
    sop_instance = str(dataset.SOPInstanceUID)
    meta = getattr(dataset, "file_meta", None)
    own = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    candidates = [own] if own else []
    candidates += [
        c.transfer_syntax
        for c in negotiated.contexts.values()
        if c.abstract_syntax == sop_class and c.scu_role
    ]
    for syntax in candidates:
        try:
            context_id, target = _choose(negotiated, sop_class, syntax)
        except NoAcceptedContext:
            continue
        if own and own not in UNCOMPRESSED_TRANSFER_SYNTAXES and target != own:
            continue
        data = encode_dataset(dataset, target)
        return PreparedStore(context_id, sop_class, sop_instance, data, len(data))
    _choose(negotiated, sop_class, own or "1.2.840.10008.1.2")  # raises with the reason
    raise NoAcceptedContext(f"no context for {sop_class}")  # pragma: no cover


def _prepare_file(
    negotiated: Negotiated, path: str | bytes, meta: FileMeta | None = None
) -> PreparedStore:
    with open(path, "rb", buffering=0) as stream:
        if meta is None:
            meta = parse_file_meta(stream.read(FIRST_READ), stream)
        size = os.fstat(stream.fileno()).st_size - meta.dataset_offset
        context_id, target = _choose(negotiated, meta.sop_class_uid, meta.transfer_syntax)
        if target != meta.transfer_syntax:
            stream.seek(meta.dataset_offset)
            raw = stream.read()
            data = encode_dataset(decode_dataset(raw, meta.transfer_syntax), target)
            return PreparedStore(
                context_id, meta.sop_class_uid, meta.sop_instance_uid, data, len(data)
            )
        if size <= 0:
            return PreparedStore(context_id, meta.sop_class_uid, meta.sop_instance_uid, b"", 0)
        mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)[meta.dataset_offset :]
    return PreparedStore(context_id, meta.sop_class_uid, meta.sop_instance_uid, view, size, mapped)


def storage_contexts(instances: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """Contexts to propose for ``(SOP class, transfer syntax)`` pairs.

    Per SOP class: one context with its instances' own transfer syntaxes, and
    a second with the uncompressed ones when an own syntax is compressed,
    there are several, or none is known, so :func:`prepare_store` can convert
    when the peer refuses the first. ``ValueError`` past
    :data:`MAX_STORAGE_CONTEXTS`.
    """
    own: dict[str, list[str]] = {}
    for sop_class, syntax in instances:
        syntaxes = own.setdefault(sop_class, [])
        if syntax and syntax not in syntaxes:
            syntaxes.append(syntax)
    contexts: list[tuple[str, list[str]]] = []
    for sop_class, syntaxes in own.items():
        if syntaxes:
            contexts.append((sop_class, syntaxes))
        if len(syntaxes) != 1 or syntaxes[0] not in UNCOMPRESSED_TRANSFER_SYNTAXES:
            contexts.append((sop_class, list(UNCOMPRESSED_TRANSFER_SYNTAXES)))
    if len(contexts) > MAX_STORAGE_CONTEXTS:
        raise ValueError(
            f"{len(own)} SOP classes need {len(contexts)} presentation contexts; an "
            f"association carries {MAX_STORAGE_CONTEXTS} besides Verification: "
            "send them in several runs"
        )
    return contexts
