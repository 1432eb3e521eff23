"""What a C-STORE SCU sends: a Dataset, raw dataset bytes, or a Part 10 file.

A Part 10 file whose transfer syntax the association accepted for its SOP
class is sent as its own bytes: its File Meta group is read without pydicom,
the file is mapped into memory, and the dataset part goes out as views of the
map (no decode, no re-encode, no copy). When no context carries the file's
own transfer syntax, the instance is converted to one that was accepted
(:mod:`dicomnet.dataset.transcode`): native to native, compressed to native,
native to a lossless compression, and to a lossy one only when the caller
allows it; anything else is a clear error naming the transfer syntax. The
conversion runs in an executor (:func:`prepare_store_async`).
"""

from __future__ import annotations

import asyncio
import copy
import mmap
import os
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from dicomnet.core.negotiation import Negotiated
from dicomnet.core.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from dicomnet.dataset.encoding import encode_dataset
from dicomnet.dataset.part10 import FIRST_READ, FileMeta, parse_file_meta
from dicomnet.dataset.transcode import (
    ENCODABLE_LOSSLESS,
    ENCODABLE_LOSSY,
    conversion_targets,
    transcode_dataset,
    transcode_dataset_bytes,
)
from dicomnet.errors import DicomNetError

__all__ = [
    "MAX_STORAGE_CONTEXTS",
    "NoAcceptedContext",
    "PreparedStore",
    "plan_store",
    "prepare_store",
    "prepare_store_async",
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


def _choose(
    negotiated: Negotiated, sop_class: str, transfer_syntax: str, *, allow_lossy: bool = False
) -> tuple[int, str]:
    """The context for the instance's own syntax, else the first we can convert to.

    Conversion targets are tried in :func:`~dicomnet.dataset.transcode.conversion_targets`
    order (native before compressed, lossless before lossy), whatever the
    order of the peer's contexts, so a peer accepting several never makes us
    encode when a native context is there.
    """
    usable: dict[str, int] = {}
    for context_id, context in negotiated.contexts.items():
        if context.abstract_syntax != sop_class or not context.scu_role:
            continue  # a C-GET SCP stores only where the requestor took the SCP role
        usable.setdefault(context.transfer_syntax, context_id)
    if transfer_syntax in usable:
        return usable[transfer_syntax], transfer_syntax
    for target in conversion_targets(transfer_syntax, allow_lossy=allow_lossy):
        if target in usable:
            return usable[target], target
    if not usable:
        raise NoAcceptedContext(
            f"the peer accepted no presentation context for SOP class {sop_class}"
        )
    raise NoAcceptedContext(
        f"cannot send transfer syntax {transfer_syntax} for {sop_class}: the peer accepted "
        f"only {', '.join(sorted(usable))}, and dicomnet does not convert "
        f"{transfer_syntax} to any of them" + ("" if allow_lossy else " without loss")
    )


@dataclass(frozen=True, slots=True)
class _Conversion:
    """A conversion decided on the event loop, to run in an executor."""

    context_id: int
    sop_class_uid: str
    source: Any
    own: str
    target: str
    allow_lossy: bool
    dataset_offset: int = 0

    def run(self) -> PreparedStore:
        """Blocking: read, decode, encode (a thread of the executor)."""
        source = self.source
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as stream:
                stream.seek(self.dataset_offset)
                source = stream.read()
        if isinstance(source, (bytes, bytearray, memoryview)):
            data, uid = transcode_dataset_bytes(
                source, self.own, self.target, allow_lossy=self.allow_lossy
            )
        else:  # a Dataset the caller still owns: convert a copy
            dataset = source
            if self.own != self.target and (
                not _is_native(self.own) or self.target not in UNCOMPRESSED_TRANSFER_SYNTAXES
            ):
                dataset = copy.deepcopy(source)
                transcode_dataset(dataset, self.own, self.target, allow_lossy=self.allow_lossy)
            data, uid = encode_dataset(dataset, self.target), str(dataset.SOPInstanceUID)
        return PreparedStore(self.context_id, self.sop_class_uid, uid, data, len(data))


def _is_native(syntax: str) -> bool:
    return not syntax or syntax in UNCOMPRESSED_TRANSFER_SYNTAXES


def _plan(
    negotiated: Negotiated,
    source: Any,
    sop_class_uid: str | None,
    sop_instance_uid: str | None,
    transfer_syntax: str | None,
    allow_lossy: bool,
) -> PreparedStore | _Conversion:
    """The cheap part of preparing a store: choose the context; send as is when
    the instance's own syntax was accepted, else describe the conversion."""
    if isinstance(source, (str, os.PathLike)):
        # A bulk_store.StoreJob carries the meta group it already read.
        return _plan_file(
            negotiated, os.fspath(source), getattr(source, "file_meta", None), allow_lossy
        )
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not (sop_class_uid and sop_instance_uid and transfer_syntax):
            raise ValueError(
                "raw dataset bytes need sop_class_uid, sop_instance_uid and transfer_syntax"
            )
        context_id, target = _choose(
            negotiated, sop_class_uid, transfer_syntax, allow_lossy=allow_lossy
        )
        if target == transfer_syntax:
            return PreparedStore(context_id, sop_class_uid, sop_instance_uid, source, len(source))
        return _Conversion(context_id, sop_class_uid, source, transfer_syntax, target, allow_lossy)
    sop_class = str(source.SOPClassUID)
    meta = getattr(source, "file_meta", None)
    own = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
    context_id, target = _choose(negotiated, sop_class, own, allow_lossy=allow_lossy)
    return _Conversion(context_id, sop_class, source, own, target, allow_lossy)


def plan_store(
    negotiated: Negotiated, source: str | os.PathLike[str], allow_lossy: bool = False
) -> PreparedStore | _Conversion:
    """A Part 10 file ready to send on the event loop, or the conversion it needs.

    The cheap, non-blocking part of :func:`prepare_store_async` for a path:
    a :class:`~dicomnet.net.bulk_store.StoreJob` brings the meta group it
    read, so the file is opened once more only to be mapped.
    """
    return _plan_file(
        negotiated, os.fspath(source), getattr(source, "file_meta", None), allow_lossy
    )


def _plan_file(
    negotiated: Negotiated, path: str | bytes, meta: FileMeta | None, allow_lossy: bool
) -> PreparedStore | _Conversion:
    if meta is None:
        with open(path, "rb", buffering=0) as stream:
            meta = parse_file_meta(stream.read(FIRST_READ), stream)
    context_id, target = _choose(
        negotiated, meta.sop_class_uid, meta.transfer_syntax, allow_lossy=allow_lossy
    )
    if target != meta.transfer_syntax:
        return _Conversion(
            context_id,
            meta.sop_class_uid,
            os.fsdecode(path),
            meta.transfer_syntax,
            target,
            allow_lossy,
            meta.dataset_offset,
        )
    # one open for the map (which takes its own descriptor) and no stream object
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)  # the file holds the meta group
    finally:
        os.close(fd)
    size = len(mapped) - meta.dataset_offset
    if size <= 0:
        mapped.close()
        return PreparedStore(context_id, meta.sop_class_uid, meta.sop_instance_uid, b"", 0)
    view = memoryview(mapped)[meta.dataset_offset :]
    return PreparedStore(context_id, meta.sop_class_uid, meta.sop_instance_uid, view, size, mapped)


def prepare_store(
    negotiated: Negotiated,
    source: Any,
    *,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    transfer_syntax: str | None = None,
    allow_lossy: bool = False,
) -> PreparedStore:
    """Turn what the user gave ``store()`` into bytes on an accepted context (blocking).

    Parameters
    ----------
    source : pydicom.Dataset, bytes-like, or path
        Raw bytes need ``sop_class_uid``, ``sop_instance_uid`` and
        ``transfer_syntax``.
    allow_lossy : bool
        Permit a lossy encode when the peer accepted only a lossy syntax.
    """
    plan = _plan(negotiated, source, sop_class_uid, sop_instance_uid, transfer_syntax, allow_lossy)
    return plan if isinstance(plan, PreparedStore) else plan.run()


async def prepare_store_async(
    negotiated: Negotiated,
    source: Any,
    *,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    transfer_syntax: str | None = None,
    allow_lossy: bool = False,
    executor: Executor | None = None,
) -> PreparedStore:
    """:func:`prepare_store` with any conversion run in ``executor`` (default: the
    loop's), so decoding one instance never stalls the other associations.

    The pixel codecs release the GIL while they work, so conversions of
    several instances in flight use several cores.
    """
    plan = _plan(negotiated, source, sop_class_uid, sop_instance_uid, transfer_syntax, allow_lossy)
    if isinstance(plan, PreparedStore):
        return plan
    return await asyncio.get_running_loop().run_in_executor(executor, plan.run)


def storage_contexts(
    instances: Iterable[tuple[str, str]], *, allow_lossy: bool = False
) -> list[tuple[str, list[str]]]:
    """Contexts to propose for ``(SOP class, transfer syntax)`` pairs.

    Per SOP class: one context for each of its instances' own transfer
    syntaxes (one for them all when that would pass
    :data:`MAX_STORAGE_CONTEXTS`), and one more with what
    :func:`prepare_store` can convert them to: explicit and implicit VR
    little endian always (implicit is the one syntax every peer must
    accept, PS3.5 10.1), then the other native ones, then the compressed
    syntaxes whose codec is installed (lossy only with ``allow_lossy``).
    Own syntaxes apart from the alternatives, so a peer that accepts the
    own syntax is never made to take a conversion. ``ValueError`` past
    :data:`MAX_STORAGE_CONTEXTS`.
    """
    own: dict[str, list[str]] = {}
    for sop_class, syntax in instances:
        syntaxes = own.setdefault(sop_class, [])
        if syntax not in syntaxes:
            syntaxes.append(syntax)
    for shape in ("split", "merged", "single"):
        contexts = _contexts(own, allow_lossy, shape)
        if len(contexts) <= MAX_STORAGE_CONTEXTS:
            break
    if len(contexts) > MAX_STORAGE_CONTEXTS:
        raise ValueError(
            f"{len(own)} SOP classes need {len(contexts)} presentation contexts; an "
            f"association carries {MAX_STORAGE_CONTEXTS} besides Verification: "
            "send them in several runs"
        )
    return contexts


def _contexts(
    own: dict[str, list[str]], allow_lossy: bool, shape: str
) -> list[tuple[str, list[str]]]:
    """The contexts of one SOP class after another, in one of three shapes.

    ``split``: one context per own syntax (an acceptor takes one syntax per
    context, so a JPEG-LS file and an RLE file of one class need two), then
    one with the conversion targets. ``merged``: one context for the own
    syntaxes, then the targets. ``single``: one context, own syntaxes first
    then the targets, for sets of more than 63 SOP classes; the peer then
    picks, and a file may be converted where another shape would have sent
    it as it is.
    """
    contexts: list[tuple[str, list[str]]] = []
    for sop_class, syntaxes in own.items():
        known = [s for s in syntaxes if s]
        alternatives: list[str] = []
        for syntax in syntaxes:
            for target in conversion_targets(syntax, allow_lossy=allow_lossy):
                if target not in alternatives and target not in known:
                    alternatives.append(target)
        alternatives.sort(key=_preference)
        if shape == "single":
            contexts.append((sop_class, known + alternatives))
            continue
        if shape == "split":
            contexts += [(sop_class, [syntax]) for syntax in known]
        elif known:
            contexts.append((sop_class, known))
        if alternatives:
            contexts.append((sop_class, alternatives))
    return contexts


_ORDER = {
    syntax: rank
    for rank, syntax in enumerate(
        (
            EXPLICIT_VR_LITTLE_ENDIAN,
            IMPLICIT_VR_LITTLE_ENDIAN,
            *UNCOMPRESSED_TRANSFER_SYNTAXES,
            *ENCODABLE_LOSSLESS,
            *ENCODABLE_LOSSY,
        )
    )
}


def _preference(syntax: str) -> int:
    """Native first (explicit, implicit, ...), then lossless encodings, then lossy."""
    return _ORDER.get(syntax, len(_ORDER))
