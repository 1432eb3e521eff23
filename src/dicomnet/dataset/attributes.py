"""Read a few top-level attributes from dataset bytes, without pydicom.

The archive indexes every instance it stores; parsing each header with
pydicom costs about 300 us, a third of what receiving a 130 KB instance
costs. The index needs only a handful of short text attributes near the
start of the dataset, so :func:`read_attributes` walks the elements of an
implicit or explicit VR little endian dataset, skipping values (sequences of
undefined length included) until it passes the last tag it wants.

It gives up (returns None) rather than guess: big endian or deflated data,
a Specific Character Set with code extensions (ISO 2022) or outside the
single-byte ISO 8859 family and UTF-8, truncated bytes. The caller then uses pydicom.

A storage SCP must not take that way out: pydicom, told a dataset is implicit
VR, switches to explicit VR when the first element looks explicit, and a file
whose File Meta says one thing and whose dataset says another is unreadable
to every stricter reader (DCMTK's among them). :func:`read_stored_attributes`
is the strict reader for what a peer sent: it parses the dataset in the
transfer syntax that was negotiated for it and nothing else, and raises
:class:`UnreadableDataset` where :func:`read_attributes` would return None;
see its docstring for the rules.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from dicomnet.core.codec import walk_elements
from dicomnet.core.elements import CHARSET as _CHARSET
from dicomnet.core.elements import ITEM as _ITEM
from dicomnet.core.elements import ITEM_END as _ITEM_END
from dicomnet.core.elements import SEQUENCE_END as _SEQUENCE_END
from dicomnet.core.elements import UNDEFINED as _UNDEFINED
from dicomnet.core.elements import ElementError, ElementsCut, read_header

__all__ = [
    "LITTLE_ENDIAN_SYNTAXES",
    "UnreadableDataset",
    "dataset_encoding",
    "is_complete",
    "read_attributes",
    "read_dataset_attributes",
    "read_file_attributes",
    "read_stored_attributes",
]

LITTLE_ENDIAN_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.5",
    }
)
"""Transfer syntaxes whose dataset is implicit (the first) or explicit VR little
endian outside encapsulated pixel data: the ones this module reads."""

HEADER_WINDOW = 64 << 10
"""Bytes read from the start of a stored dataset to find the wanted attributes."""

DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
INFLATE_WINDOW = 16 << 20
"""Bytes of a deflated dataset inflated to find its attributes, and no more: a
small compressed stream can inflate to terabytes (a deflate bomb)."""

IMPLICIT_SYNTAX = "1.2.840.10008.1.2"
BIG_ENDIAN_SYNTAX = "1.2.840.10008.1.2.2"
_STANDARD_SYNTAXES = "1.2.840.10008.1.2."

_TEXT_CHARSETS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
    "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3",
    "ISO_IR 110": "iso8859_4",
    "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6",
    "ISO_IR 126": "iso8859_7",
    "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9",
    "ISO_IR 203": "iso8859_15",
}
"""Single-byte (and UTF-8) character sets without code extensions: decoded here.
Any other set (ISO 2022 escapes, GB18030, several terms) goes to pydicom."""



class _Unreadable(Exception):
    """The bytes end early or are not what the transfer syntax says."""


def _header(
    data: bytes | bytearray | memoryview, pos: int, implicit: bool
) -> tuple[int, bytes, int, int]:
    """``(tag, vr, value length, header length)`` of the little endian element at ``pos``;
    :class:`_Unreadable` where the strict reader would raise."""
    try:
        return read_header(data, pos, implicit)
    except (ElementError, ElementsCut):
        raise _Unreadable from None


def _skip_undefined(data: bytes | bytearray | memoryview, pos: int, implicit: bool) -> int:
    """The position after the items of a sequence of undefined length starting at ``pos``."""
    while True:
        tag, _, length, size = _header(data, pos, True)
        pos += size
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _Unreadable
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements, then the item end
            tag, vr, length, size = _header(data, pos, implicit)
            pos += size
            if tag == _ITEM_END:
                break
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, implicit or vr == b"UN")
            else:
                pos += length


def read_attributes(
    data: bytes | bytearray | memoryview,
    implicit: bool,
    wanted: dict[int, str],
    *,
    complete: bool = True,
) -> dict[str, str] | None:
    """``keyword: value`` for the ``wanted`` tags (tag: keyword) present at the top level.

    Values are decoded text with padding removed; absent tags are left out.
    ``complete`` says whether ``data`` is the whole dataset or only its start;
    None when the bytes cannot be read this way, or end before the last
    wanted tag could have been passed.
    """
    last = max(wanted)
    found: dict[str, str] = {}
    encoding = "latin-1"
    pos = 0
    try:
        while pos < len(data):
            tag, vr, length, size = _header(data, pos, implicit)
            if tag > last:
                break
            pos += size
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, implicit or vr == b"UN")
                continue
            if pos + length > len(data):
                raise _Unreadable
            if tag == _CHARSET:
                terms = bytes(data[pos : pos + length]).decode("ascii").strip(" \x00").split("\\")
                if len(terms) > 1 or terms[0] not in _TEXT_CHARSETS:
                    return None
                encoding = _TEXT_CHARSETS[terms[0]]
                if tag in wanted:
                    found[wanted[tag]] = terms[0]
            elif tag in wanted:
                value = bytes(data[pos : pos + length]).decode(encoding)
                found[wanted[tag]] = value.strip(" \x00")
            pos += length
        else:
            if not complete:
                return None  # the window ended before the wanted tags did
    except (_Unreadable, UnicodeDecodeError, struct.error):
        return None
    return found


def is_complete(data: bytes | memoryview, implicit: bool) -> bool:
    """Whether little endian dataset bytes hold whole elements and end where the last does.

    Walks every top-level element header (sequences and encapsulated pixel
    data item by item) without reading values, so a mapped 2 GB file costs
    only its headers. A truncated or padded file fails.
    """
    pos = 0
    end = len(data)
    try:
        while pos < end:
            _, vr, length, size = _header(data, pos, implicit)
            pos += size
            if length == _UNDEFINED:
                pos = _skip_undefined(data, pos, implicit or vr == b"UN")
            else:
                pos += length
    except (_Unreadable, struct.error):
        return False
    return pos == end


def read_file_attributes(path: str | os.PathLike[str], wanted: dict[int, str]) -> dict[str, str]:
    """``keyword: value`` for the ``wanted`` tags of a Part 10 file, pixel data unread.

    The fast reader above serves little endian datasets from the first 64 KB;
    anything it declines (big endian, deflated, other character sets, a long
    header) is read with pydicom. Absent attributes are left out. Lenient,
    for files already in an archive (reindexing); what a peer sends goes
    through :func:`read_stored_attributes`.
    """
    from dicomnet.dataset.part10 import read_file_meta

    with open(path, "rb") as stream:
        meta = read_file_meta(stream)
        if meta.transfer_syntax == DEFLATED_SYNTAX:
            return _read_deflated_attributes(stream, wanted)
        if meta.transfer_syntax in LITTLE_ENDIAN_SYNTAXES:
            window = stream.read(HEADER_WINDOW)
            implicit = meta.transfer_syntax == IMPLICIT_SYNTAX
            found = read_attributes(window, implicit, wanted, complete=len(window) < HEADER_WINDOW)
            if found is not None:
                return found
    from pydicom import dcmread

    keywords = list(wanted.values())
    ds = dcmread(path, stop_before_pixels=True, specific_tags=keywords)
    return {kw: _text(ds[kw].value) for kw in keywords if kw in ds and ds[kw].value is not None}


def _text(value: Any) -> str:
    """A pydicom value as its encoded text: several values joined by backslashes."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _inflated_windows(stream: Any) -> Iterator[tuple[bytearray, bool]]:
    """``(inflated bytes so far, whole)``, growing to :data:`INFLATE_WINDOW` at most.

    Never inflates the whole dataset (pydicom would): a reader stops asking
    once it has what it wants, usually after the first 64 KB.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    window = bytearray()
    step = HEADER_WINDOW
    while True:
        target = min(len(window) + step, INFLATE_WINDOW)
        while len(window) < target and not inflater.eof:
            if inflater.unconsumed_tail:
                window += inflater.decompress(inflater.unconsumed_tail, target - len(window))
                continue
            chunk = stream.read(1 << 16)
            if not chunk:
                break
            window += inflater.decompress(chunk, target - len(window))
        whole = inflater.eof or len(window) < target
        yield window, whole
        if whole or len(window) >= INFLATE_WINDOW:
            return
        step *= 4


def _read_deflated_attributes(stream: Any, wanted: dict[int, str]) -> dict[str, str]:
    """The wanted attributes from at most the first :data:`INFLATE_WINDOW` inflated bytes;
    attributes past it make the dataset unreadable here, which the caller reports."""
    size = 0
    for window, whole in _inflated_windows(stream):
        found = read_attributes(window, False, wanted, complete=whole)
        if found is not None:
            return found
        size = len(window)
    raise ValueError(f"deflated dataset: attributes not found in its first {size} bytes")


# -- the strict reader: what a peer sent, in the syntax negotiated for it -------------------


class UnreadableDataset(ValueError):
    """A dataset that does not parse in its transfer syntax; the message says where.

    A storage SCP answers it with C000 (cannot understand) and keeps nothing.
    """


def dataset_encoding(transfer_syntax: str) -> tuple[bool, bool]:
    """``(implicit VR, little endian)`` of a transfer syntax's dataset (PS3.5 10, A).

    Every standard syntax but implicit VR little endian and explicit VR big
    endian encodes its dataset in explicit VR little endian (the deflated one
    once inflated). A private syntax says nothing about its encoding, so its
    datasets are refused rather than guessed at.
    """
    if transfer_syntax == IMPLICIT_SYNTAX:
        return True, True
    if transfer_syntax == BIG_ENDIAN_SYNTAX:
        return False, False
    if transfer_syntax.startswith(_STANDARD_SYNTAXES):
        return False, True
    raise UnreadableDataset(f"transfer syntax {transfer_syntax}: its dataset encoding is unknown")


def _walk(
    data: Any, start: int, implicit: bool, little: bool, wanted: dict[int, str]
) -> tuple[bytes | None, dict[int, tuple[bytes, bytes]], bool]:
    """The codec's strict walk (:func:`dicomnet.core.elements.walk_elements`), its
    PS3.5 errors as :class:`UnreadableDataset`; :class:`ElementsCut` passes through."""
    try:
        walked: tuple[bytes | None, dict[int, tuple[bytes, bytes]], bool]
        walked = walk_elements(data, start, implicit, little, wanted)
    except ElementError as exc:
        raise UnreadableDataset(str(exc)) from None
    return walked


def read_dataset_attributes(
    data: Any,
    implicit: bool,
    little_endian: bool,
    wanted: dict[int, str],
    *,
    start: int = 0,
) -> dict[str, str]:
    """``keyword: value`` for the ``wanted`` tags of a whole dataset, read strictly.

    ``data`` (bytes, a memoryview, an mmap) holds the dataset from ``start``
    to its end, encoded as :func:`dataset_encoding` says. The walk goes as far
    as the last wanted tag and raises :class:`UnreadableDataset`, never
    guessing another encoding, when what it walks breaks PS3.5 7.1:

    - an element of groups 0000-0007 (the File Meta group 0002 above all: a
      file would then carry two Transfer Syntax UIDs) (PS3.5 7.1);
    - tags out of ascending order, or repeated (7.1);
    - an explicit VR that is not one of PS3.5 6.2's, an undefined length on
      a VR that cannot have one, anything but items in a sequence (7.5);
    - a value or an element header running past the end (so explicit VR
      data read as implicit fails: its VR and length read as a length of
      millions).

    Values are decoded in the dataset's Specific Character Set (pydicom's
    codecs for the ones this module does not decode itself), padding
    removed; absent tags are left out.
    """
    try:
        charset, found, _ = _walk(data, start, implicit, little_endian, wanted)
    except ElementsCut as short:
        raise UnreadableDataset(str(short)) from None
    except struct.error as exc:  # pragma: no cover - lengths are checked before unpacking
        raise UnreadableDataset(str(exc)) from None
    return _decode(charset, found, wanted)


def _decode(
    charset: bytes | None, found: dict[int, tuple[bytes, bytes]], wanted: dict[int, str]
) -> dict[str, str]:
    terms = ["" if charset is None else charset.decode("latin-1").strip(" \x00")]
    if "\\" in terms[0]:
        terms = [term.strip(" ") for term in terms[0].split("\\")]
    if len(terms) == 1 and terms[0] in _TEXT_CHARSETS:
        codec = _TEXT_CHARSETS[terms[0]]
        return {
            wanted[tag]: raw.decode(codec, "replace").strip(" \x00")
            for tag, (_, raw) in found.items()
        }
    # ISO 2022 code extensions, GB18030, GBK and the other single-byte sets
    from pydicom.charset import convert_encodings, decode_bytes
    from pydicom.datadict import dictionary_VR
    from pydicom.valuerep import PersonName

    encodings = convert_encodings(terms)
    values: dict[str, str] = {}
    for tag, (vr, raw) in found.items():
        try:
            name = vr.decode("ascii") or dictionary_VR(tag)
        except KeyError:
            name = "LO"
        if name == "PN":
            text = str(PersonName(raw, encodings))
        else:
            text = decode_bytes(raw, encodings, _TEXT_DELIMITERS)
        values[wanted[tag]] = text.strip(" \x00")
    return values


_TEXT_DELIMITERS = {0x5C, 0x0D, 0x0A, 0x09, 0x0C}
"""Where ISO 2022 text returns to the first character set (PS3.5 6.1.2.5.3)."""


def read_head_attributes(
    head: Any, transfer_syntax: str, wanted: dict[int, str], *, whole: bool
) -> dict[str, str] | None:
    """The ``wanted`` attributes from a dataset's first bytes, read strictly; None
    when they may lie beyond ``head``.

    What a storage SCP calls with the bytes the codec kept in memory while it
    wrote them, so that checking an instance costs no file system call:
    ``whole`` says ``head`` is the entire dataset. The walk and its errors are
    :func:`read_dataset_attributes`'s; a deflated syntax always answers None
    (its head is compressed).
    """
    if transfer_syntax == DEFLATED_SYNTAX:
        return None
    implicit, little = dataset_encoding(transfer_syntax)
    return _window_attributes(head, implicit, little, wanted, whole)


def _window_attributes(
    window: Any, implicit: bool, little: bool, wanted: dict[int, str], whole: bool
) -> dict[str, str] | None:
    """The ``wanted`` attributes if ``window`` (a dataset's start; all of it when
    ``whole``) decides them, else None: they may lie further."""
    try:
        charset, found, passed = _walk(window, 0, implicit, little, wanted)
    except ElementsCut as short:
        if whole:
            raise UnreadableDataset(str(short)) from None
        return None
    if passed or whole:
        return _decode(charset, found, wanted)
    return None


def read_stored_attributes(path: str | os.PathLike[str], wanted: dict[int, str]) -> dict[str, str]:
    """The ``wanted`` attributes of a file a storage SCP wrote, its dataset read strictly.

    The File Meta is the storage's own, built from the presentation context,
    so its Transfer Syntax UID is the negotiated one; the dataset after it is
    the peer's, and must parse in that syntax (:func:`read_dataset_attributes`)
    before the instance is acknowledged. The first 64 KB are read; a dataset
    whose wanted tags lie further is mapped, not read, so that only the pages
    the walk touches are paged in, whatever sits before those tags.
    A deflated dataset is inflated no further than needed, and never past
    :data:`INFLATE_WINDOW`.

    Raises
    ------
    UnreadableDataset
        The dataset does not parse in its transfer syntax.
    """
    from dicomnet.dataset.part10 import read_file_meta

    with open(path, "rb") as stream:
        syntax = read_file_meta(stream).transfer_syntax
        start = stream.tell()
        if syntax == DEFLATED_SYNTAX:
            return _read_deflated_strictly(stream, wanted)
        implicit, little = dataset_encoding(syntax)
        window = stream.read(HEADER_WINDOW)  # where the wanted tags nearly always are
        found = _window_attributes(window, implicit, little, wanted, len(window) < HEADER_WINDOW)
        if found is not None:
            return found
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            # The walk indexes the map itself (slices are copies), so no view
            # of it outlives this block, even in an exception's traceback.
            return read_dataset_attributes(mapped, implicit, little, wanted, start=start)


def _read_deflated_strictly(stream: Any, wanted: dict[int, str]) -> dict[str, str]:
    size = 0
    for window, whole in _inflated_windows(stream):
        found = _window_attributes(window, False, True, wanted, whole)
        if found is not None:
            return found
        size = len(window)
    raise UnreadableDataset(f"deflated dataset: attributes not found in its first {size} bytes")
