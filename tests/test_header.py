"""The fast header reader against pydicom, and the cases it must decline."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomnet.archive.index import ATTRIBUTES, TAGS, entry_from_file
from dicomnet.dataset.attributes import read_attributes
from dicomnet.dataset.encoding import encode_dataset
from dicomnet.dataset.part10 import encode_file_meta

from factory import ct_dataset, element, nested_sequences, write_part10

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
    for sequence in (ds["ReferencedImageSequence"], ds["ProcedureCodeSequence"]):
        sequence.is_undefined_length = undefined
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


# -- the strict reader of what a peer sent --------------------------------------------------

BIG = "1.2.840.10008.1.2.2"


def strict(data: bytes, syntax: str, wanted: dict[int, str] = TAGS) -> dict[str, str]:
    from dicomnet.dataset.attributes import dataset_encoding, read_dataset_attributes

    implicit, little = dataset_encoding(syntax)
    return read_dataset_attributes(data, implicit, little, wanted)


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT, BIG])
@pytest.mark.parametrize("undefined", [False, True])
def test_strict_reader_agrees_with_pydicom(syntax: str, undefined: bool) -> None:
    ds = with_sequences(ct_dataset(3), undefined)
    assert strict(encode_dataset(ds, syntax), syntax) == expected(ds)


@pytest.mark.parametrize(("sent", "negotiated"), [(EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT)])
def test_strict_reader_refuses_another_encoding_than_the_negotiated(
    sent: str, negotiated: str
) -> None:
    from dicomnet.dataset.attributes import UnreadableDataset

    with pytest.raises(UnreadableDataset):
        strict(encode_dataset(ct_dataset(0), sent), negotiated)


def test_little_endian_read_as_big_finds_nothing() -> None:
    # (0008,0016) read big endian is (0800,1600): past every wanted tag, so the
    # walk ends there, and a storage refuses a dataset without its SOP Instance UID
    assert strict(encode_dataset(ct_dataset(0), EXPLICIT), BIG) == {}


def test_strict_reader_refuses_groups_below_0008() -> None:
    from dicomnet.dataset.attributes import UnreadableDataset

    data = encode_dataset(ct_dataset(0), IMPLICIT)
    meta = element(0x0002, 0x0010, b"1.2.840.10008.1.2\0") + element(0x0002, 0x0013, b"X1")
    with pytest.raises(UnreadableDataset, match="File Meta group"):
        strict(meta + data, IMPLICIT)
    with pytest.raises(UnreadableDataset, match="group 0000"):
        strict(element(0x0000, 0x0100, b"\1\0") + data, IMPLICIT)
    with pytest.raises(UnreadableDataset, match="group 0007"):
        strict(element(0x0007, 0x0010, b"PRIVATE ") + data, IMPLICIT)


def test_strict_reader_refuses_what_breaks_ps3_5_section_7() -> None:
    from dicomnet.dataset.attributes import UnreadableDataset

    data = encode_dataset(ct_dataset(0), EXPLICIT)
    cases = {
        "out of order": element(0x0008, 0x0018, b"1.2\0", b"UI")
        + element(0x0008, 0x0016, b"1.2\0", b"UI"),
        "repeated": element(0x0008, 0x0016, b"1.2\0", b"UI") * 2,
        "not a VR": element(0x0008, 0x0016, b"1.2\0", b"XY"),
        "lowercase VR": element(0x0008, 0x0016, b"1.2\0", b"ui"),
        "cut in a value": data[:60],
        "cut in a header": data[: -len(data) + 5],
        "undefined length on a UI": b"\x08\x00\x16\x00UI\x00\x00"[:6] + b"\xff\xff",
    }
    for name, sent in cases.items():
        with pytest.raises(UnreadableDataset):
            strict(sent, EXPLICIT)
            pytest.fail(name)
    # an undefined length is for sequences: anything but items inside one is refused
    sequence = b"\x08\x00\x40\x11SQ\0\0\xff\xff\xff\xff" + element(0x0008, 0x0016, b"1.2\0", b"UI")
    with pytest.raises(UnreadableDataset, match="where an item belongs"):
        strict(sequence, EXPLICIT, {0x00200013: "InstanceNumber"})


def test_strict_reader_walks_deep_nesting_without_recursion() -> None:
    nested = nested_sequences(5000)  # (0008,1140) SQ, before the wanted UIDs
    data = element(0x0008, 0x0016, b"1.2\0") + nested + element(0x0020, 0x000D, b"1.2.3\0")
    found = strict(data, IMPLICIT)
    assert found == {"SOPClassUID": "1.2", "StudyInstanceUID": "1.2.3"}


def test_strict_reader_decodes_iso_2022_without_pydicom_reading_the_dataset() -> None:
    ds = ct_dataset(0)
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎"
    ds.StudyDescription = "頭部"
    for syntax in (IMPLICIT, EXPLICIT):
        found = strict(encode_dataset(ds, syntax), syntax)
        assert found["PatientName"] == "Yamada^Tarou=山田^太郎"
        assert found["StudyDescription"] == "頭部"


def test_strict_reader_of_a_stored_file_past_any_window(tmp_path: Path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from dicomnet.dataset.attributes import UnreadableDataset, read_stored_attributes

    ds = ct_dataset(2)
    ds.add_new(0x00191010, "OB", b"\1" * (3 << 20))  # 3 MB of private data before the UIDs
    for syntax in (EXPLICIT, IMPLICIT, BIG, DeflatedExplicitVRLittleEndian):
        path = write_part10(ds, tmp_path / "big.dcm", syntax)
        found = read_stored_attributes(path, TAGS)
        assert found["StudyInstanceUID"] == ds.StudyInstanceUID, syntax
        assert found["SeriesInstanceUID"] == ds.SeriesInstanceUID, syntax
    private = ct_dataset(0)
    path = tmp_path / "private.dcm"
    meta = encode_file_meta(private.SOPClassUID, private.SOPInstanceUID, "1.2.3.4.5")
    path.write_bytes(meta + encode_dataset(private, EXPLICIT))
    with pytest.raises(UnreadableDataset, match="encoding is unknown"):
        read_stored_attributes(path, TAGS)


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT, BIG])
def test_head_reader_agrees_with_the_file_reader_or_asks_for_the_file(syntax: str) -> None:
    from dicomnet.dataset.attributes import UnreadableDataset, read_head_attributes

    ds = with_sequences(ct_dataset(3), undefined=True)
    data = encode_dataset(ds, syntax)
    assert read_head_attributes(data, syntax, TAGS, whole=True) == expected(ds)
    # a head cut between two elements before the last wanted tag: the file must say
    cut = data[: data.index(b"HEAD^NECK")]
    assert read_head_attributes(cut, syntax, TAGS, whole=False) is None
    # the same bytes as a whole dataset: it ends inside an element, refused
    with pytest.raises(UnreadableDataset):
        read_head_attributes(cut, syntax, TAGS, whole=True)
    # what breaks PS3.5 is refused from the head, without the file
    with pytest.raises(UnreadableDataset, match="File Meta group"):
        read_head_attributes(element(0x0002, 0x0010, b"1.2\0") + data, IMPLICIT, TAGS, whole=False)
    assert read_head_attributes(data, "1.2.840.10008.1.2.1.99", TAGS, whole=True) is None
