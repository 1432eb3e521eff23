"""The fast header reader against pydicom, and the cases it must decline."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomnet.archive.index import ATTRIBUTES, TAGS, entry_from_file
from dicomnet.dataset.attributes import read_attributes
from dicomnet.dataset.encoding import encode_dataset

from factory import ct_dataset, write_part10

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


def with_sequences(ds: Dataset, undefined: bool) -> Dataset:
    inner = Dataset()
    inner.CodeValue = "X"
    inner.CodeMeaning = "nested"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.3"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, item])
    ds.ProcedureCodeSequence = Sequence([])
    for element in (ds["ReferencedImageSequence"], ds["ProcedureCodeSequence"]):
        element.is_undefined_length = undefined
    item["PurposeOfReferenceCodeSequence"].is_undefined_length = undefined
    ds.StudyDescription = "HEAD^NECK"
    ds.AccessionNumber = "A1"
    return ds


def expected(ds: Dataset) -> dict[str, str]:
    return {kw: str(ds[kw].value) for kw in TAGS.values() if kw in ds}


def test_tags_are_those_of_the_dictionary() -> None:
    from pydicom.datadict import keyword_for_tag

    assert {keyword_for_tag(tag) for tag in TAGS} == set(TAGS.values()) == set(ATTRIBUTES)
    assert all(keyword_for_tag(tag) == kw for tag, kw in TAGS.items())


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT])
@pytest.mark.parametrize("undefined", [False, True])
def test_same_values_as_pydicom(syntax: str, undefined: bool) -> None:
    ds = with_sequences(ct_dataset(3), undefined)
    data = encode_dataset(ds, syntax)
    assert read_attributes(data, syntax == IMPLICIT, TAGS) == expected(ds)


def test_utf8_character_set_is_decoded() -> None:
    ds = ct_dataset(0)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    found = read_attributes(encode_dataset(ds, EXPLICIT), False, TAGS)
    assert found is not None and found["PatientName"] == "Müller^Jürgen"


def test_declines_what_it_cannot_read() -> None:
    ds = ct_dataset(0)
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    assert read_attributes(encode_dataset(ds, EXPLICIT), False, TAGS) is None
    data = encode_dataset(ct_dataset(0), EXPLICIT)
    assert read_attributes(data[:40], False, TAGS, complete=False) is None
    assert read_attributes(data[:41], False, TAGS) is None  # cut inside an element
    assert read_attributes(b"\x08\x00\x16\x00UI\xff\xff", False, TAGS) is None


def test_entry_from_file_matches_pydicom_for_either_path(tmp_path: Path) -> None:
    ds = with_sequences(ct_dataset(1), True)
    little = write_part10(ds, tmp_path / "le.dcm", EXPLICIT)
    big = write_part10(
        with_sequences(ct_dataset(1), True), tmp_path / "be.dcm", "1.2.840.10008.1.2.2"
    )
    for path in (little, big):
        entry = entry_from_file(path, 1, EXPLICIT, "0" * 64)
        for keyword, value in expected(ds).items():
            if keyword not in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
                assert entry.attributes[keyword] == value, (path.name, keyword)


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT])
def test_is_complete_walks_to_the_end_and_no_further(syntax: str) -> None:
    from dicomnet.dataset.attributes import is_complete

    data = encode_dataset(with_sequences(ct_dataset(2), True), syntax)
    implicit = syntax == IMPLICIT
    assert is_complete(data, implicit)
    assert not is_complete(data[:-1], implicit)
    assert not is_complete(data[:-200], implicit)
    assert not is_complete(data + b"\x00" * 4, implicit)


def test_is_complete_with_encapsulated_pixel_data() -> None:
    from pydicom.encaps import encapsulate

    from dicomnet.dataset.attributes import is_complete

    ds = ct_dataset(0)
    ds.PixelData = encapsulate([b"\x01" * 100, b"\x02" * 50])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = encode_dataset(ds, EXPLICIT)
    assert is_complete(data, False)
    assert not is_complete(data[:-8], False)  # the sequence delimiter is missing


def test_deflated_file_attributes_come_from_a_bounded_window(tmp_path: Path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from dicomnet.dataset.attributes import read_file_attributes

    ds = ct_dataset(3)
    path = write_part10(ds, tmp_path / "deflated.dcm", DeflatedExplicitVRLittleEndian)
    wanted = {0x0020000D: "StudyInstanceUID", 0x00080018: "SOPInstanceUID"}
    found = read_file_attributes(path, wanted)
    assert found == {
        "StudyInstanceUID": ds.StudyInstanceUID,
        "SOPInstanceUID": ds.SOPInstanceUID,
    }


def test_a_deflate_bomb_is_refused_not_inflated(tmp_path: Path) -> None:
    import zlib

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from dicomnet.dataset.attributes import read_file_attributes
    from dicomnet.dataset.part10 import read_file_meta

    ds = ct_dataset(4)
    path = write_part10(ds, tmp_path / "bomb.dcm", DeflatedExplicitVRLittleEndian)
    with path.open("rb") as stream:
        read_file_meta(stream)
        meta = path.read_bytes()[: stream.tell()]
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = packer.compress(bytes(1 << 28)) + packer.flush()  # 256 MiB of zeros, ~260 KB
    path.write_bytes(meta + bomb)
    with pytest.raises(ValueError, match="deflated dataset"):
        read_file_attributes(path, {0x00080018: "SOPInstanceUID"})
