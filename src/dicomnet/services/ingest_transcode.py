"""Transcoding on ingest: store every received instance in one transfer syntax.

Theory of operation
-------------------
The storage SCP first makes the instance durable exactly as it arrived
(:class:`dicomnet.services.storage.FolderStorage`). Then, before the index
row and before Success, :class:`TranscodeOnStored` converts the file to the
chosen syntax in an executor (the event loop keeps receiving), writes the
result beside it, fsyncs it, renames it over the original and fsyncs the
folder. A crash at any point leaves either the original file or the
converted one, both whole and both the instance that was acknowledged or is
about to be; never a partial file under the instance's name. It runs as the
storage's ``on_stored`` step, in front of the one it replaces (an archive's
index row), which then records the converted file.

What is converted: native and lossless-compressed instances with pixel
data. A lossy instance is kept as it came (decoding it would only grow it,
and it may not be made lossy twice), as is one without Pixel Data or one the
codecs cannot handle (logged once per instance). Lossy targets are refused:
a lossy conversion makes a new SOP Instance UID (PS3.3 C.7.6.1.1.5), which
an archive acknowledging the sender's UID must not do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

from dicomnet.core.uids import (
    ALL_TRANSFER_SYNTAXES,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEG_2000_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    RLE_LOSSLESS,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from dicomnet.dataset.part10 import FIRST_READ, encode_file_meta, parse_file_meta
from dicomnet.dataset.transcode import (
    ENCODABLE_LOSSLESS,
    LOSSY_SYNTAXES,
    CodecUnavailable,
    ConversionRefused,
    can_convert,
    codecs_available,
    transcode_dataset_bytes,
)

__all__ = [
    "ACCEPT_POLICIES",
    "STORE_AS_TARGETS",
    "TranscodeOnStored",
    "accepted_syntaxes",
    "convert_file",
]

log = logging.getLogger("dicomnet.services.ingest_transcode")

STORE_AS_TARGETS = (*UNCOMPRESSED_TRANSFER_SYNTAXES, *ENCODABLE_LOSSLESS)
"""What ``--store-as`` may name: the native syntaxes and the lossless encodings."""

_LOSSLESS = (
    RLE_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
)
ACCEPT_POLICIES = {
    "uncompressed": UNCOMPRESSED_TRANSFER_SYNTAXES,
    "lossless": (*UNCOMPRESSED_TRANSFER_SYNTAXES, *_LOSSLESS),
    "all": ALL_TRANSFER_SYNTAXES,
}
"""``--accept``: the transfer syntaxes a storage SCP accepts, native first, then
lossless, then lossy, as the acceptor's order of preference (PS3.8 9.3.3.2:
the acceptor picks one of the proposed syntaxes; dicomnet picks the first of
its own list that was proposed). ``all`` is the library's default list, the
one docs/conformance.md 4.2.3 prints."""


def accepted_syntaxes(accept: str, prefer: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The storage transfer syntaxes for a policy, ``prefer`` moved to the front.

    As ``storescp +x*``: a preferred syntax is chosen whenever the requestor
    proposed it, the rest in the policy's order.
    """
    if accept not in ACCEPT_POLICIES:
        raise ValueError(f"--accept {accept!r}: one of {', '.join(ACCEPT_POLICIES)}")
    allowed = tuple(dict.fromkeys(ACCEPT_POLICIES[accept]))
    for syntax in prefer:
        if syntax not in allowed:
            raise ValueError(f"--prefer {syntax} is not accepted under --accept {accept}")
    return tuple(dict.fromkeys((*prefer, *allowed)))


_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def convert_file(path: str, target: str, fsync: bool = True) -> tuple[str, int, str] | None:
    """Convert one stored Part 10 file in place (blocking; an executor's thread).

    Returns
    -------
    (transfer syntax, dataset size, dataset SHA-256), or None when the file
    is kept as it came.
    """
    with open(path, "rb") as stream:
        data = stream.read()
    meta = parse_file_meta(data[:FIRST_READ], BytesIO(data[FIRST_READ:]))
    source = meta.transfer_syntax
    if source == target or source in LOSSY_SYNTAXES:
        return None
    if _PIXEL_DATA_TAG not in data[meta.dataset_offset :]:  # cheap; a false hit only costs time
        return None
    if not can_convert(source, target):
        return None
    try:
        body, uid = transcode_dataset_bytes(memoryview(data)[meta.dataset_offset :], source, target)
    except (ConversionRefused, CodecUnavailable, ValueError, KeyError) as exc:
        log.warning("keeping %s as %s: %s", meta.sop_instance_uid, source, exc)
        return None
    if uid != meta.sop_instance_uid:  # pragma: no cover - lossless targets keep the UID
        raise ConversionRefused("a conversion on ingest changed the SOP Instance UID")
    head = encode_file_meta(meta.sop_class_uid, uid, target, source_ae_title=_source_ae(data))
    temp = f"{path}.{os.getpid()}.transcode"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            out.write(body)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if fsync:
        folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return target, len(body), hashlib.sha256(body).hexdigest()


def _source_ae(data: bytes) -> str:
    """(0002,0016) Source Application Entity Title of the file as received, kept."""
    marker = data.find(b"\x02\x00\x16\x00AE")
    if marker < 0 or marker > 4096:
        return ""
    length = int.from_bytes(data[marker + 6 : marker + 8], "little")
    return data[marker + 8 : marker + 8 + length].decode("latin-1").strip()


class TranscodeOnStored:
    """A storage's ``on_stored`` step that first converts the new file to ``target``.

    Installed with :meth:`install` on a
    :class:`dicomnet.services.storage.FolderStorage` (an archive's too): the
    storage calls it once the instance is durable as received; it converts
    the file in an executor, then runs the step it replaced (an archive's
    index row) with the converted file's record, so Success waits for both.

    Parameters
    ----------
    storage : FolderStorage
    target : str
        One of :data:`STORE_AS_TARGETS`.
    executor : Executor, optional
        Where conversions run (default: the loop's threads).
    """

    def __init__(
        self,
        storage: Any,
        target: str,
        *,
        executor: Executor | None = None,
        fsync: bool = True,
    ) -> None:
        if target not in STORE_AS_TARGETS:
            raise ValueError(
                f"cannot store as {target}: choose a native or lossless syntax "
                f"({', '.join(STORE_AS_TARGETS)})"
            )
        if not codecs_available(target, encode=True):
            raise CodecUnavailable(f"no pixel codec installed to encode {target}")
        self._storage = storage
        self._then: Callable[[Any, Any], Awaitable[int]] | None = storage.on_stored
        self.target = target
        self._executor = executor
        self._fsync = fsync

    @classmethod
    def install(cls, storage: Any, target: str, **options: Any) -> TranscodeOnStored:
        """Put the conversion in front of ``storage``'s ``on_stored`` step."""
        hook = cls(storage, target, **options)
        storage.on_stored = hook
        return hook

    async def __call__(self, request: Any, outcome: Any) -> int:
        """Convert a new instance's file, then the replaced step (or the plain status)."""
        if not outcome.duplicate:
            converted = await asyncio.get_running_loop().run_in_executor(
                self._executor, convert_file, os.fspath(outcome.path), self.target, self._fsync
            )
            if converted is not None:
                syntax, size, sha256 = converted
                outcome = replace(outcome, transfer_syntax=syntax, size=size, sha256=sha256)
        if self._then is None:
            return int(self._storage.status_of(outcome))
        return await self._then(request, outcome)
