"""Transfer-syntax conversion of one instance: bytes in, bytes in the target syntax out.

Theory of operation
-------------------
A sender converts when the peer accepted none of an instance's own transfer
syntaxes but accepted one dicomnet can produce (PS3.5 10, A.4); a listener
converts on ingest when told to store everything in one syntax. The functions
here are sans-IO and blocking: the network layers run them in an executor so
one association's conversion never stalls the event loop.

Three kinds of step, each a pydicom call:

* native to native (explicit, implicit, big endian, deflated): re-encode the
  elements; pydicom alone, no pixel codec;
* compressed to native: decode the encapsulated frames with pydicom's pixel
  backends (``pylibjpeg`` with its libjpeg, OpenJPEG and RLE plugins, and
  ``pyjpegls``), all in the optional ``codecs`` extra;
* native to compressed: RLE Lossless, JPEG-LS Lossless and JPEG 2000 Lossless
  always; JPEG-LS near-lossless and JPEG 2000 (lossy) only when the caller
  allows loss. Compressed to another compressed syntax decodes then encodes.

No silent loss (PS3.3 C.7.6.1.1.5): an instance decoded from a lossy syntax
keeps Lossy Image Compression "01" and gains the ratio and method of the step
that lost information when they were missing; values are appended, never
reset. A lossy encode of an instance marks it the same way and, as PS3.3
C.7.6.1.1.5 and C.12.1.1.1 require of a new image, gets a new SOP Instance
UID, Image Type DERIVED and a Source Image Sequence naming the original.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import threading
from io import BytesIO
from typing import TYPE_CHECKING, Any

from dicomnet.core.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    HTJ2K,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    RLE_LOSSLESS,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
)
from dicomnet.dataset.encoding import decode_dataset, encode_dataset
from dicomnet.dataset.part10 import encode_file_meta, parse_file_meta
from dicomnet.errors import DicomNetError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "CODECS_EXTRA",
    "DECODABLE",
    "ENCODABLE_LOSSLESS",
    "ENCODABLE_LOSSY",
    "JPEG_LOSSLESS_P14",
    "LOSSY_SYNTAXES",
    "SYNTAX_NAMES",
    "CodecUnavailable",
    "ConversionRefused",
    "can_convert",
    "codecs_available",
    "conversion_targets",
    "syntax_by_name",
    "transcode_dataset",
    "transcode_dataset_bytes",
    "transcode_part10",
    "warm_up",
]

CODECS_EXTRA = "pip install dicomnet[codecs]"
"""What to run when a pixel codec is missing."""

JPEG_LOSSLESS_P14 = "1.2.840.10008.1.2.4.57"
"""JPEG Lossless, Non-Hierarchical (Process 14), any selection value."""

LOSSY_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LS_NEAR_LOSSLESS, JPEG_2000, HTJ2K})
"""Syntaxes whose pixel data may differ from the original (PS3.5 8.2, A.4)."""

_METHOD = {
    JPEG_BASELINE: "ISO_10918_1",
    JPEG_EXTENDED: "ISO_10918_1",
    JPEG_LS_NEAR_LOSSLESS: "ISO_14495_1",
    JPEG_2000: "ISO_15444_1",
    HTJ2K: "ISO_15444_15",
}
"""Lossy Image Compression Method (0028,2114) defined terms (PS3.3 C.7.6.1.1.5.1)."""

DECODABLE = (
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_P14,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000_LOSSLESS,
    JPEG_2000,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    HTJ2K,
    RLE_LOSSLESS,
)
"""Compressed syntaxes dicomnet decodes (with the ``codecs`` extra)."""

ENCODABLE_LOSSLESS = (JPEG_LS_LOSSLESS, JPEG_2000_LOSSLESS, RLE_LOSSLESS)
"""Compressed syntaxes dicomnet produces without loss, in the order it prefers them."""

ENCODABLE_LOSSY = (JPEG_LS_NEAR_LOSSLESS, JPEG_2000)
"""Compressed syntaxes dicomnet produces with loss, only when the caller allows it."""

_NATIVE = frozenset(UNCOMPRESSED_TRANSFER_SYNTAXES)


SYNTAX_NAMES = {
    "explicit": EXPLICIT_VR_LITTLE_ENDIAN,
    "implicit": IMPLICIT_VR_LITTLE_ENDIAN,
    "big": EXPLICIT_VR_BIG_ENDIAN,
    "deflated": DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    "rle": RLE_LOSSLESS,
    "jpeg-lossless": JPEG_LOSSLESS_SV1,
    "jpeg-lossless-p14": JPEG_LOSSLESS_P14,
    "jpeg-ls": JPEG_LS_LOSSLESS,
    "j2k-lossless": JPEG_2000_LOSSLESS,
    "htj2k-lossless": HTJ2K_LOSSLESS,
    "jpeg-baseline": JPEG_BASELINE,
    "jpeg-extended": JPEG_EXTENDED,
    "jpeg-ls-near": JPEG_LS_NEAR_LOSSLESS,
    "j2k": JPEG_2000,
    "htj2k": HTJ2K,
}
"""Short names for transfer syntaxes on the command line (a UID works too)."""


def syntax_by_name(text: str) -> str:
    """A transfer syntax UID from a short name of :data:`SYNTAX_NAMES` or a UID."""
    value = text.strip()
    if value.lower() in SYNTAX_NAMES:
        return SYNTAX_NAMES[value.lower()]
    if value in SYNTAX_NAMES.values() or value == HTJ2K_LOSSLESS_RPCL:
        return value
    raise ValueError(f"unknown transfer syntax {text!r}: a UID or one of {', '.join(SYNTAX_NAMES)}")


class CodecUnavailable(DicomNetError, RuntimeError):
    """The pixel codec a conversion needs is not installed."""


class ConversionRefused(DicomNetError, ValueError):
    """A conversion that would lose information the caller did not allow to lose,
    or between syntaxes dicomnet does not convert."""


_JPEG = ("pylibjpeg", "libjpeg")
_J2K = ("pylibjpeg", "openjpeg")
_JPEG_FAMILY = (JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_P14, JPEG_LOSSLESS_SV1)
_J2K_FAMILY = (JPEG_2000_LOSSLESS, JPEG_2000, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K)
_DECODERS: dict[str, tuple[tuple[str, ...], ...]] = {
    JPEG_BASELINE: (_JPEG, ("gdcm",)),
    JPEG_EXTENDED: (_JPEG, ("gdcm",)),
    JPEG_LOSSLESS_P14: (_JPEG, ("gdcm",)),
    JPEG_LOSSLESS_SV1: (_JPEG, ("gdcm",)),
    JPEG_LS_LOSSLESS: (("jpeg_ls",), _JPEG, ("gdcm",)),
    JPEG_LS_NEAR_LOSSLESS: (("jpeg_ls",), _JPEG, ("gdcm",)),
    JPEG_2000_LOSSLESS: (_J2K, ("gdcm",)),
    JPEG_2000: (_J2K, ("gdcm",)),
    HTJ2K_LOSSLESS: (_J2K,),
    HTJ2K_LOSSLESS_RPCL: (_J2K,),
    HTJ2K: (_J2K,),
    RLE_LOSSLESS: ((),),
}
_ENCODERS: dict[str, tuple[tuple[str, ...], ...]] = {
    RLE_LOSSLESS: ((),),
    JPEG_LS_LOSSLESS: (("jpeg_ls",),),
    JPEG_LS_NEAR_LOSSLESS: (("jpeg_ls",),),
    JPEG_2000_LOSSLESS: (_J2K,),
    JPEG_2000: (_J2K,),
}
"""Which modules pydicom's backends need per syntax (any one group; numpy always).

Looked up with :func:`importlib.util.find_spec`, which imports nothing, so a
sender of native files deciding what to propose never pays for importing
pydicom's pixel machinery; pydicom itself has the final word at conversion."""


@functools.lru_cache(maxsize=64)
def codecs_available(transfer_syntax: str, *, encode: bool = False) -> bool:
    """Whether a backend to decode (or encode) the syntax looks installed.

    Native syntaxes need none.
    """
    if transfer_syntax in _NATIVE:
        return True
    groups = (_ENCODERS if encode else _DECODERS).get(transfer_syntax, ())
    if not groups or not _installed("numpy"):
        return False
    return any(all(_installed(name) for name in group) for group in groups)


_PREFERRED_PLUGIN: dict[str, tuple[str, tuple[str, ...]]] = {
    JPEG_LS_LOSSLESS: ("pyjpegls", ("jpeg_ls",)),
    JPEG_LS_NEAR_LOSSLESS: ("pyjpegls", ("jpeg_ls",)),
    RLE_LOSSLESS: ("pylibjpeg", ("pylibjpeg", "rle")),
    **{syntax: ("pylibjpeg", _JPEG) for syntax in _JPEG_FAMILY},
    **{syntax: ("pylibjpeg", _J2K) for syntax in _J2K_FAMILY},
}
"""The backend per syntax. JPEG-LS: CharLS through pyjpegls decodes about four
times faster than libjpeg or GDCM (bench/README.md). RLE: pylibjpeg-rle runs
in compiled code where pydicom's own is pure Python. JPEG and JPEG 2000: the
``codecs`` extra's own backends, so that a GDCM installed beside them (which
pydicom would try first) does not change what a conversion produces. A
syntax whose preferred backend is missing takes whichever pydicom finds."""


_J2K_ENCODE = threading.Lock()
"""pylibjpeg-openjpeg 2.6's encoder is not thread-safe: two JPEG 2000 encodes at
once in one process crash it (SIGSEGV, tests/test_transcode.py reproduces the
case), so they take turns; decoders and the other encoders run concurrently.
A process pool is unaffected (one encode per process)."""

_SERIALIZED_ENCODERS = {JPEG_2000_LOSSLESS: _J2K_ENCODE, JPEG_2000: _J2K_ENCODE}


def _plugin(syntax: str) -> str:
    preferred = _PREFERRED_PLUGIN.get(syntax)
    if preferred is not None and all(_installed(name) for name in preferred[1]):
        return preferred[0]
    return ""


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def _is_native(syntax: str) -> bool:
    # An instance with no known syntax (a Dataset without file meta) is native.
    return not syntax or syntax in _NATIVE


def can_convert(source: str, target: str, *, allow_lossy: bool = False) -> bool:
    """Whether dicomnet may turn ``source`` into ``target`` (policy, not codecs).

    Decoding to native is always allowed (a lossy source stays marked lossy);
    encoding is allowed to the lossless syntaxes, and to the lossy ones only
    with ``allow_lossy`` and never from a source that is already lossy (that
    would compound the loss).
    """
    if source == target:
        return True
    if not _is_native(source) and source not in DECODABLE:
        return False
    if target in _NATIVE:
        return True
    if target in ENCODABLE_LOSSLESS:
        return True
    return target in ENCODABLE_LOSSY and allow_lossy and source not in LOSSY_SYNTAXES


def conversion_targets(source: str, *, allow_lossy: bool = False) -> tuple[str, ...]:
    """What a sender proposes besides ``source``: native first, then the encodings
    whose codec is installed, lossless before lossy.

    Native targets are listed even without the codecs extra for a compressed
    source, so that the conversion, if the peer takes it, fails with an error
    naming the extra rather than the association offering nothing.
    """
    native: tuple[str, ...] = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
    if _is_native(source):
        native += (EXPLICIT_VR_BIG_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    elif source not in DECODABLE:
        return ()
    encoded = tuple(
        syntax
        for syntax in (*ENCODABLE_LOSSLESS, *ENCODABLE_LOSSY)
        if can_convert(source, syntax, allow_lossy=allow_lossy)
        and codecs_available(syntax, encode=True)
        and (_is_native(source) or codecs_available(source))
    )
    return tuple(s for s in (*native, *encoded) if s != source)


def warm_up() -> None:
    """Import pydicom's pixel machinery and the installed backends now.

    A process pool's initializer: each worker pays its imports (about half a
    second) while the association is being negotiated, not on its first
    image.
    """
    with contextlib.suppress(ImportError):
        from pydicom.pixels.decoders.base import get_decoder
        from pydicom.pixels.encoders.base import get_encoder

        for syntax in DECODABLE:
            if codecs_available(syntax):
                get_decoder(syntax).is_available  # noqa: B018 - loads the plugins
        for syntax in ENCODABLE_LOSSLESS:
            if codecs_available(syntax, encode=True):
                get_encoder(syntax).is_available  # noqa: B018


def _require(syntax: str, *, encode: bool) -> None:
    if not codecs_available(syntax, encode=encode):
        verb = "encode" if encode else "decode"
        raise CodecUnavailable(
            f"no pixel codec installed to {verb} transfer syntax {syntax}: {CODECS_EXTRA}"
        )


def _pixel_bytes(dataset: Dataset) -> int:
    if "PixelData" not in dataset or dataset["PixelData"].value is None:
        return 0
    return len(dataset["PixelData"].value)


def _append(dataset: Dataset, keyword: str, value: str) -> None:
    """Add a value to a multi-valued attribute (PS3.3 C.7.6.1.1.5: never reset)."""
    if keyword in dataset and dataset[keyword].value not in (None, ""):
        current = dataset[keyword].value
        values = [str(v) for v in current] if dataset[keyword].VM > 1 else [str(current)]
        setattr(dataset, keyword, [*values, value])
    else:
        setattr(dataset, keyword, value)


def _ratio(uncompressed: int, compressed: int) -> str:
    """A Lossy Image Compression Ratio (DS, at most 16 characters)."""
    return f"{uncompressed / max(compressed, 1):.2f}"


def _decompress(dataset: Dataset, source: str) -> None:
    """Decode the pixel data in place to native; keep the lossy history."""
    from pydicom.uid import UID

    _require(source, encode=False)
    if "PixelData" not in dataset:
        return  # nothing encapsulated: the elements alone change encoding
    compressed = _pixel_bytes(dataset)
    try:
        dataset.decompress(generate_instance_uid=False, decoding_plugin=_plugin(source))
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        if "missing dependencies" in str(exc):
            raise CodecUnavailable(f"cannot decode {source}: {exc}; {CODECS_EXTRA}") from exc
        raise ConversionRefused(f"cannot decode {source} pixel data: {exc}") from exc
    if source in LOSSY_SYNTAXES:
        # Already lossy before this step: record it if the creator did not.
        dataset.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in dataset:
            dataset.LossyImageCompressionMethod = _METHOD[source]
            if "LossyImageCompressionRatio" not in dataset:
                dataset.LossyImageCompressionRatio = _ratio(_pixel_bytes(dataset), compressed)
    dataset.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)


def _compress(dataset: Dataset, target: str) -> None:
    """Encode native pixel data in place; a lossy step makes a new, derived instance."""
    from pydicom.dataset import Dataset as PydicomDataset
    from pydicom.uid import UID, generate_uid

    _require(target, encode=True)
    if "PixelData" not in dataset:
        dataset.file_meta.TransferSyntaxUID = UID(target)
        return
    original_uid = str(dataset.SOPInstanceUID)
    uncompressed = _pixel_bytes(dataset)
    options: dict[str, Any] = {}
    if target == JPEG_2000:
        options["j2k_cr"] = [10]
    elif target == JPEG_LS_NEAR_LOSSLESS:
        options["jls_error"] = 2
    try:
        with _SERIALIZED_ENCODERS.get(target, contextlib.nullcontext()):
            dataset.compress(
                target, generate_instance_uid=False, encoding_plugin=_plugin(target), **options
            )
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        if "missing dependencies" in str(exc):
            raise CodecUnavailable(f"cannot encode {target}: {exc}; {CODECS_EXTRA}") from exc
        raise ConversionRefused(f"cannot encode pixel data as {target}: {exc}") from exc
    if target in LOSSY_SYNTAXES:
        dataset.LossyImageCompression = "01"
        _append(dataset, "LossyImageCompressionRatio", _ratio(uncompressed, _pixel_bytes(dataset)))
        _append(dataset, "LossyImageCompressionMethod", _METHOD[target])
        new_uid = generate_uid()
        source_item = PydicomDataset()
        source_item.ReferencedSOPClassUID = dataset.SOPClassUID
        source_item.ReferencedSOPInstanceUID = original_uid
        dataset.SourceImageSequence = [*dataset.get("SourceImageSequence", []), source_item]
        step = f"Lossy compression {_METHOD[target]}"
        before = str(dataset.get("DerivationDescription", "") or "")
        dataset.DerivationDescription = f"{before}; {step}" if before else step  # ST: one value
        if "ImageType" in dataset and dataset.ImageType:
            image_type = (
                list(dataset.ImageType) if dataset["ImageType"].VM > 1 else [str(dataset.ImageType)]
            )
            image_type[0] = "DERIVED"
            dataset.ImageType = image_type
        dataset.SOPInstanceUID = new_uid
        dataset.file_meta.MediaStorageSOPInstanceUID = new_uid


def transcode_dataset(
    dataset: Dataset, source: str, target: str, *, allow_lossy: bool = False
) -> Dataset:
    """Convert a decoded Dataset from ``source`` to ``target`` in place.

    Parameters
    ----------
    dataset : pydicom.Dataset
        Its pixel data as ``source`` encodes it; ``file_meta`` is created or
        updated to say ``target``.
    source, target : str
        Transfer syntax UIDs; an empty ``source`` means native.
    allow_lossy : bool
        Permit JPEG-LS near-lossless and JPEG 2000 (lossy) targets.

    Raises
    ------
    ConversionRefused
        A lossy target without ``allow_lossy``, or a syntax not converted.
    CodecUnavailable
        The codec is not installed; the message names the extra.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    if not can_convert(source, target, allow_lossy=allow_lossy):
        if target not in ENCODABLE_LOSSY:
            why = "dicomnet does not convert between them"
        elif source in LOSSY_SYNTAXES:
            why = "a second lossy step would compound the loss"
        else:
            why = "lossy compression not allowed (--allow-lossy permits it)"
        raise ConversionRefused(f"will not convert {source or 'native'} to {target}: {why}")
    if getattr(dataset, "file_meta", None) is None:
        dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = UID(source or EXPLICIT_VR_LITTLE_ENDIAN)
    if source == target:
        return dataset
    if not _is_native(source):
        _decompress(dataset, source)
    if target not in _NATIVE:
        _compress(dataset, target)
    dataset.file_meta.TransferSyntaxUID = UID(target)
    return dataset


_SPLICEABLE = frozenset(
    {
        JPEG_LOSSLESS_P14,
        JPEG_LOSSLESS_SV1,
        JPEG_LS_LOSSLESS,
        JPEG_2000_LOSSLESS,
        HTJ2K_LOSSLESS,
        HTJ2K_LOSSLESS_RPCL,
        RLE_LOSSLESS,
    }
)
"""Lossless sources whose decode to explicit VR little endian touches Pixel Data alone."""

_PIXEL_DATA = 0x7FE00010


def _decode_spliced(data: bytes, source: str) -> tuple[bytes, str] | None:
    """Decode to explicit VR little endian by replacing only the Pixel Data element.

    A compressed dataset's other elements are already explicit VR little
    endian (PS3.5 A.4), and a lossless decode of single-sample pixels changes
    no attribute, so the bytes before Pixel Data go out as they are: no
    re-encoding of the header. None when the instance is not of that kind
    (the general path then runs). Returns the bytes and the SOP Instance UID.
    """
    from pydicom.dataset import Dataset as PydicomDataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.filereader import read_dataset
    from pydicom.tag import BaseTag
    from pydicom.uid import UID

    dataset = read_dataset(BytesIO(data), False, True)
    raw = dataset._dict.get(BaseTag(_PIXEL_DATA))  # still the raw element: where it starts
    value_tell = getattr(raw, "value_tell", None)
    if value_tell is None or dataset.get("SamplesPerPixel", 1) != 1:
        return None
    offset = value_tell - 12  # explicit VR OB: tag, VR, 2 reserved bytes, 4-byte length
    if data[offset : offset + 4] != b"\xe0\x7f\x10\x00":
        return None
    photometric = dataset.get("PhotometricInterpretation")
    instance_uid = str(dataset.get("SOPInstanceUID", ""))
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = UID(source)
    try:
        dataset.decompress(generate_instance_uid=False, decoding_plugin=_plugin(source))
    except (RuntimeError, ValueError, NotImplementedError):
        return None  # the general path reports it
    if dataset.get("PhotometricInterpretation") != photometric:
        return None
    pixels = dataset["PixelData"].value
    vr = b"OB" if dataset.get("BitsAllocated", 16) <= 8 else b"OW"
    header = b"\xe0\x7f\x10\x00" + vr + b"\x00\x00" + len(pixels).to_bytes(4, "little")
    after = PydicomDataset({tag: e for tag, e in dataset.items() if tag > _PIXEL_DATA})
    tail = encode_dataset(after, EXPLICIT_VR_LITTLE_ENDIAN) if len(after) else b""
    return b"".join((data[:offset], header, pixels, tail)), instance_uid


def transcode_dataset_bytes(
    data: bytes | bytearray | memoryview,
    source: str,
    target: str,
    *,
    allow_lossy: bool = False,
) -> tuple[bytes, str]:
    """Dataset bytes (no file meta) in ``source`` to bytes in ``target``.

    Returns
    -------
    bytes, str
        The encoded dataset and its SOP Instance UID (new after a lossy encode).
    """
    if source in _SPLICEABLE and target == EXPLICIT_VR_LITTLE_ENDIAN:
        _require(source, encode=False)
        spliced = _decode_spliced(bytes(data), source)
        if spliced is not None:
            return spliced
    native_in = _is_native(source)
    dataset = decode_dataset(data, source if native_in else EXPLICIT_VR_LITTLE_ENDIAN)
    transcode_dataset(dataset, source, target, allow_lossy=allow_lossy)
    return encode_dataset(dataset, target), str(dataset.SOPInstanceUID)


def transcode_part10(
    data: bytes | bytearray | memoryview,
    target: str,
    *,
    allow_lossy: bool = False,
    source_ae_title: str = "",
) -> bytes:
    """A whole Part 10 file converted to ``target``: preamble, new meta group, dataset.

    Returns the input unchanged when it already is in ``target``.
    """
    meta = parse_file_meta(bytes(data[:4096]), BytesIO(bytes(data[4096:])))
    if meta.transfer_syntax == target:
        return bytes(data)
    body, instance_uid = transcode_dataset_bytes(
        memoryview(data)[meta.dataset_offset :],
        meta.transfer_syntax,
        target,
        allow_lossy=allow_lossy,
    )
    head = encode_file_meta(
        meta.sop_class_uid, instance_uid, target, source_ae_title=source_ae_title
    )
    return head + body
