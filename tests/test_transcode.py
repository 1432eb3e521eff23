"""Transfer-syntax conversion (dicomnet.dataset.transcode) against DCMTK's codecs.

Compressed inputs are made by DCMTK (dcmcjpeg, dcmcjpls, dcmcrle) and by
pydicom (JPEG 2000, which Debian's DCMTK lacks); lossless conversions must
give back the original pixels exactly, lossy ones what DCMTK's decoders give,
within the codec's tolerance, and every lossy step is recorded (PS3.3
C.7.6.1.1.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomnet.dataset import transcode
from dicomnet.dataset.transcode import (
    CodecUnavailable,
    ConversionRefused,
    can_convert,
    conversion_targets,
    transcode_part10,
)

from codec_files import (
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_P14,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    RLE_LOSSLESS,
    ct_image,
    dcmtk_baseline,
    dcmtk_compress,
    dcmtk_decompress,
    native_file,
    pixels,
    pydicom_compress,
    rgb_image,
)
from peers import run_dcmtk

DCMTK_LOSSLESS = (JPEG_LOSSLESS_SV1, JPEG_LOSSLESS_P14, JPEG_LS_LOSSLESS, RLE_LOSSLESS)


def convert(path: Path, target: str, out: Path, **options: bool) -> Path:
    out.write_bytes(transcode_part10(path.read_bytes(), target, **options))
    return out


def as_array(path: Path) -> np.ndarray:
    return dcmread(path).pixel_array.astype(np.int32)


@pytest.mark.interop
@pytest.mark.parametrize("syntax", DCMTK_LOSSLESS)
def test_dcmtk_lossless_decodes_to_the_original_pixels(tmp_path: Path, syntax: str) -> None:
    native = native_file(tmp_path, ct_image(1), "native.dcm")
    compressed = dcmtk_compress(native, syntax, tmp_path / "compressed.dcm")
    decoded = {}
    for target in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        out = convert(compressed, target, tmp_path / f"out-{target}.dcm")
        result = dcmread(out)
        assert str(result.file_meta.TransferSyntaxUID) == target
        assert bytes(result.PixelData) == pixels(native)
        assert result.SOPInstanceUID == dcmread(native).SOPInstanceUID
        assert "LossyImageCompression" not in result or result.LossyImageCompression == "00"
        decoded[target] = result
    # Explicit VR replaces Pixel Data alone; implicit re-encodes every element:
    # both must hold the same elements with the same values.
    explicit, implicit = decoded[ExplicitVRLittleEndian], decoded[ImplicitVRLittleEndian]
    assert [e.tag for e in explicit] == [e.tag for e in implicit]
    assert all(explicit[e.tag].value == e.value for e in implicit), syntax


@pytest.mark.interop
@pytest.mark.parametrize("syntax", (JPEG_LS_LOSSLESS, RLE_LOSSLESS))
def test_our_lossless_encodings_decode_in_dcmtk_to_the_original(
    tmp_path: Path, syntax: str
) -> None:
    native = native_file(tmp_path, ct_image(2, frames=3), "native.dcm")
    ours = convert(native, syntax, tmp_path / "ours.dcm")
    assert len(ours.read_bytes()) < len(native.read_bytes())
    decoded = dcmtk_decompress(ours, tmp_path / "dcmtk.dcm")
    assert pixels(decoded) == pixels(native)
    assert dcmread(ours).SOPInstanceUID == dcmread(native).SOPInstanceUID


def test_jpeg_2000_lossless_round_trip_is_pixel_identical(tmp_path: Path) -> None:
    native = native_file(tmp_path, ct_image(3), "native.dcm")
    j2k = convert(native, JPEG_2000_LOSSLESS, tmp_path / "j2k.dcm")
    assert str(dcmread(j2k).file_meta.TransferSyntaxUID) == JPEG_2000_LOSSLESS
    back = convert(j2k, ExplicitVRLittleEndian, tmp_path / "back.dcm")
    assert pixels(back) == pixels(native)
    made_by_pydicom = pydicom_compress(dcmread(native), JPEG_2000_LOSSLESS, tmp_path / "p.dcm")
    assert pixels(convert(made_by_pydicom, ExplicitVRLittleEndian, tmp_path / "b.dcm")) == (
        pixels(native)
    )


@pytest.mark.interop
def test_compressed_to_compressed_goes_through_native(tmp_path: Path) -> None:
    native = native_file(tmp_path, ct_image(4), "native.dcm")
    jls = dcmtk_compress(native, JPEG_LS_LOSSLESS, tmp_path / "jls.dcm")
    rle = convert(jls, RLE_LOSSLESS, tmp_path / "rle.dcm")
    assert pixels(dcmtk_decompress(rle, tmp_path / "dcmtk.dcm")) == pixels(native)


@pytest.mark.interop
@pytest.mark.parametrize(("syntax", "tolerance"), ((JPEG_EXTENDED, 2), (JPEG_LS_NEAR_LOSSLESS, 0)))
def test_lossy_decode_matches_dcmtk_and_stays_marked(
    tmp_path: Path, syntax: str, tolerance: int
) -> None:
    native = native_file(tmp_path, ct_image(5), "native.dcm")
    compressed = dcmtk_compress(native, syntax, tmp_path / "lossy.dcm")
    ours = convert(compressed, ExplicitVRLittleEndian, tmp_path / "ours.dcm")
    theirs = dcmtk_decompress(compressed, tmp_path / "dcmtk.dcm")
    difference = np.abs(as_array(ours) - as_array(theirs))
    assert int(difference.max()) <= tolerance
    original = np.abs(as_array(ours) - as_array(native))
    assert int(original.max()) > 0  # the codec did lose something
    result = dcmread(ours)
    assert result.LossyImageCompression == "01"
    assert result.LossyImageCompressionMethod  # DCMTK's own record, kept
    assert result.LossyImageCompressionRatio
    assert result.SOPInstanceUID == dcmread(compressed).SOPInstanceUID


@pytest.mark.interop
def test_jpeg_baseline_colour_decode_matches_dcmtk(tmp_path: Path) -> None:
    native = native_file(tmp_path, rgb_image(1), "native.dcm")
    compressed = dcmtk_baseline(native, tmp_path / "baseline.dcm")
    assert str(dcmread(compressed).file_meta.TransferSyntaxUID) == JPEG_BASELINE
    ours = convert(compressed, ImplicitVRLittleEndian, tmp_path / "ours.dcm")
    theirs = dcmtk_decompress(compressed, tmp_path / "dcmtk.dcm")
    assert dcmread(ours).PhotometricInterpretation == dcmread(theirs).PhotometricInterpretation
    difference = np.abs(as_array(ours) - as_array(theirs))
    assert int(difference.max()) <= 3  # IDCT and colour conversion rounding
    assert dcmread(ours).LossyImageCompression == "01"


def test_unmarked_lossy_jpeg_2000_gains_the_lossy_attributes(tmp_path: Path) -> None:
    native = native_file(tmp_path, ct_image(6), "native.dcm")
    lossy = pydicom_compress(dcmread(native), JPEG_2000, tmp_path / "j2k.dcm", j2k_cr=[20])
    assert "LossyImageCompression" not in dcmread(lossy)
    result = dcmread(convert(lossy, ExplicitVRLittleEndian, tmp_path / "out.dcm"))
    assert result.LossyImageCompression == "01"
    assert result.LossyImageCompressionMethod == "ISO_15444_1"
    assert float(result.LossyImageCompressionRatio) > 2


def test_lossless_is_never_compressed_lossily_unless_allowed(tmp_path: Path) -> None:
    native = native_file(tmp_path, ct_image(7), "native.dcm")
    for target in (JPEG_2000, JPEG_LS_NEAR_LOSSLESS):
        assert not can_convert(ExplicitVRLittleEndian, target)
        assert target not in conversion_targets(ExplicitVRLittleEndian)
        with pytest.raises(ConversionRefused, match="lossy"):
            convert(native, target, tmp_path / "refused.dcm")
    assert not (tmp_path / "refused.dcm").exists()


def test_allowed_lossy_compression_makes_a_new_derived_instance(tmp_path: Path) -> None:
    original = dcmread(native_file(tmp_path, ct_image(8), "native.dcm"))
    out = convert(tmp_path / "native.dcm", JPEG_2000, tmp_path / "lossy.dcm", allow_lossy=True)
    result = dcmread(out)
    assert result.SOPInstanceUID != original.SOPInstanceUID
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID
    assert result.LossyImageCompression == "01"
    assert result.LossyImageCompressionMethod == "ISO_15444_1"
    assert float(result.LossyImageCompressionRatio) > 1
    assert result.ImageType[0] == "DERIVED"
    assert result.SourceImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID


def test_lossy_to_lossy_is_refused_even_when_allowed(tmp_path: Path) -> None:
    native = native_file(tmp_path, ct_image(9), "native.dcm")
    lossy = convert(native, JPEG_2000, tmp_path / "lossy.dcm", allow_lossy=True)
    assert not can_convert(JPEG_2000, JPEG_LS_NEAR_LOSSLESS, allow_lossy=True)
    with pytest.raises(ConversionRefused, match="compound"):
        convert(lossy, JPEG_LS_NEAR_LOSSLESS, tmp_path / "again.dcm", allow_lossy=True)
    # Lossy to lossless compression adds no loss and keeps the record.
    kept = dcmread(convert(lossy, JPEG_LS_LOSSLESS, tmp_path / "jls.dcm"))
    assert kept.LossyImageCompression == "01"
    assert kept.LossyImageCompressionMethod == "ISO_15444_1"


def test_without_the_codecs_extra_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    native = native_file(tmp_path, ct_image(10), "native.dcm")
    jls = convert(native, JPEG_LS_LOSSLESS, tmp_path / "jls.dcm")
    missing = {"jpeg_ls", "libjpeg", "openjpeg", "pylibjpeg", "gdcm", "numpy"}
    real = transcode._installed
    monkeypatch.setattr(transcode, "_installed", lambda name: name not in missing and real(name))
    transcode.codecs_available.cache_clear()
    try:
        # Native targets are still offered (the conversion then says what to
        # install); compressed ones are not.
        assert conversion_targets(JPEG_LS_LOSSLESS)[:2] == (
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
        )
        assert not set(conversion_targets(ExplicitVRLittleEndian)) & {
            JPEG_LS_LOSSLESS,
            JPEG_2000_LOSSLESS,
            RLE_LOSSLESS,
        }
        with pytest.raises(CodecUnavailable, match=r"pip install dicomnet\[codecs\]"):
            convert(jls, ExplicitVRLittleEndian, tmp_path / "out.dcm")
        with pytest.raises(CodecUnavailable, match=r"pip install dicomnet\[codecs\]"):
            convert(native, RLE_LOSSLESS, tmp_path / "out.dcm")
        # Native to native needs no codec.
        convert(native, ImplicitVRLittleEndian, tmp_path / "implicit.dcm")
    finally:
        transcode.codecs_available.cache_clear()


def test_dcmtk_reads_what_we_decode(tmp_path: Path) -> None:
    native = native_file(tmp_path, ct_image(11), "native.dcm")
    j2k = convert(native, JPEG_2000_LOSSLESS, tmp_path / "j2k.dcm")
    out = convert(j2k, ImplicitVRLittleEndian, tmp_path / "out.dcm")
    dumped = run_dcmtk("dcmdump", "+L", str(out))
    assert dumped.returncode == 0, dumped.stderr
    assert "ImplicitVRLittleEndian" in dumped.stdout or "Little Endian Implicit" in dumped.stdout


CONCURRENT_ENCODES = """
import sys
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, sys.argv[1])
from codec_files import ct_image, native_file
from pathlib import Path
from dicomnet.dataset import transcode
if len(sys.argv) > 3:
    transcode._SERIALIZED_ENCODERS.clear()
folder = Path(sys.argv[2])
data = [native_file(folder, ct_image(i, size=256), f"n{i}.dcm").read_bytes() for i in range(48)]
def encode(raw):
    return transcode.transcode_part10(raw, "1.2.840.10008.1.2.4.90")
with ThreadPoolExecutor(6) as pool:
    print(len(list(pool.map(encode, data))))
"""


@pytest.mark.slow  # pixel codecs only
def test_concurrent_jpeg_2000_encodes_in_threads_do_not_crash(tmp_path: Path) -> None:
    """The listener converts in threads; pylibjpeg-openjpeg's encoder must take turns."""
    import subprocess
    import sys

    tests = str(Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", CONCURRENT_ENCODES, tests, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "48"
