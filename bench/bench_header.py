"""What reading a stored instance's indexed attributes costs at commit.

    pytest bench/bench_header.py --benchmark-only --benchmark-columns=median,ops

``read_stored_attributes`` (strict: the dataset must parse in its transfer
syntax, checked as far as the last indexed tag) against ``read_file_attributes``
(the lenient reader with its pydicom fallback, for files already archived),
on a 130 KB CT image as the archive indexes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomnet.archive.index import TAGS
from dicomnet.dataset.attributes import read_file_attributes, read_stored_attributes

from factory import ct_dataset, write_part10  # type: ignore[import-not-found]

SYNTAXES = {"explicit": "1.2.840.10008.1.2.1", "implicit": "1.2.840.10008.1.2"}
READERS = {"strict": read_stored_attributes, "lenient": read_file_attributes}


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_read_indexed_attributes(benchmark, tmp_path: Path, syntax: str, reader: str) -> None:  # type: ignore[no-untyped-def]
    ds = ct_dataset(1, pixels=256)  # 128 KB of pixels
    ds.StudyDescription = "CHEST"
    ds.AccessionNumber = "A123"
    path = write_part10(ds, tmp_path / "ct.dcm", SYNTAXES[syntax])
    found = benchmark(READERS[reader], path, TAGS)
    assert found["SOPInstanceUID"] == ds.SOPInstanceUID


def test_walk_a_modality_header(benchmark, codec) -> None:  # type: ignore[no-untyped-def]
    """The strict walk of each codec over the header of a real CT image (pydicom's
    ``CT_small.dcm``: 127 elements up to the last indexed tag), from the bytes the
    pump keeps in memory: what a storage SCP pays per instance before Success."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from dicomnet.dataset.encoding import encode_dataset

    head = encode_dataset(dcmread(get_testdata_file("CT_small.dcm")), SYNTAXES["explicit"])
    _, found, passed = benchmark(codec.walk_elements, head[:16384], 0, False, True, TAGS)
    assert passed and len(found) > 15
