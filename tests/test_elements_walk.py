"""The compiled strict element walk against its pure twin: same results, same errors."""

from __future__ import annotations

import importlib
import os
import random
from types import ModuleType
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomnet.archive.index import TAGS
from dicomnet.core import elements as pure
from dicomnet.dataset.encoding import encode_dataset

from factory import ct_dataset, element, nested_sequences


@pytest.fixture
def compiled() -> ModuleType:
    """The compiled codec; missing, it fails the test, except in the pure-only pass."""
    try:
        return importlib.import_module("dicomnet.core._pdu")
    except ImportError as error:
        if os.environ.get("DICOMNET_NO_EXTENSIONS", "") == "1":
            pytest.skip("DICOMNET_NO_EXTENSIONS=1: pure-Python pass, compiled codec not tested")
        pytest.fail(f"compiled codec dicomnet.core._pdu cannot be imported ({error})")


EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG = "1.2.840.10008.1.2.2"
ENCODINGS = {EXPLICIT: (False, True), IMPLICIT: (True, True), BIG: (False, False)}


def outcome(walk: Any, data: bytes, implicit: bool, little: bool, wanted: Any) -> Any:
    try:
        return ("ok", walk(data, 0, implicit, little, wanted))
    except (pure.ElementError, pure.ElementsCut) as exc:
        return (type(exc).__name__, str(exc))


def nested(undefined: bool) -> Dataset:
    ds = ct_dataset(5)
    inner = Dataset()
    inner.CodeValue = "X"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    item.PurposeOfReferenceCodeSequence = Sequence([inner, inner])
    ds.ReferencedImageSequence = Sequence([item, item])
    ds.ProcedureCodeSequence = Sequence([])
    for sequence in (ds["ReferencedImageSequence"], ds["ProcedureCodeSequence"]):
        sequence.is_undefined_length = undefined
    item["PurposeOfReferenceCodeSequence"].is_undefined_length = undefined
    ds.add_new(0x00091010, "UN", b"\1\2\3\4")
    return ds


def corpus() -> list[tuple[bytes, bool, bool]]:
    cases = []
    for syntax, (implicit, little) in ENCODINGS.items():
        for undefined in (False, True):
            cases.append((encode_dataset(nested(undefined), syntax), implicit, little))
    return cases


def test_both_walks_agree_on_whole_datasets(compiled: ModuleType) -> None:
    for data, implicit, little in corpus():
        expected = outcome(pure.walk_elements, data, implicit, little, TAGS)
        assert expected[0] == "ok" and expected[1][1], expected
        assert outcome(compiled.walk_elements, data, implicit, little, TAGS) == expected


def test_both_walks_agree_on_every_cut(compiled: ModuleType) -> None:
    for data, implicit, little in corpus():
        for end in range(0, len(data), 3):
            head = data[:end]
            expected = outcome(pure.walk_elements, head, implicit, little, TAGS)
            assert outcome(compiled.walk_elements, head, implicit, little, TAGS) == expected, end


def test_both_walks_agree_on_mutated_bytes(compiled: ModuleType) -> None:
    rng = random.Random(20261206)
    seen = set()
    for data, implicit, little in corpus():
        for _ in range(400):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            expected = outcome(pure.walk_elements, bytes(mutated), implicit, little, TAGS)
            seen.add(expected[0])
            got = outcome(compiled.walk_elements, bytes(mutated), implicit, little, TAGS)
            assert got == expected, bytes(mutated).hex()
    assert seen == {"ok", "ElementError", "ElementsCut"}  # the mutations reach every verdict


def test_both_walks_agree_on_hostile_shapes(compiled: ModuleType) -> None:
    deep = nested_sequences(3000)
    cases = [
        (element(0x0008, 0x0016, b"1.2\0") + deep + element(0x0020, 0x000D, b"1.2.3\0"), True),
        (element(0x0002, 0x0010, b"1.2\0") + element(0x0008, 0x0016, b"1.2\0"), True),
        (element(0x0008, 0x0018, b"1.2\0", b"UI") + element(0x0008, 0x0016, b"1\0", b"UI"), False),
        (element(0x0008, 0x0016, b"1.2\0", b"XY"), False),
        (b"\x08\x00\x16\x00UI\xff\xff", False),
        (b"\x08\x00\x40\x11SQ\0\0\xff\xff\xff\xff" + element(0x0008, 0x0016, b"1\0", b"UI"), False),
        (b"", False),
    ]
    wanted = {**TAGS, 0x00200013: "InstanceNumber"}
    for data, implicit in cases:
        expected = outcome(pure.walk_elements, data, implicit, True, wanted)
        assert outcome(compiled.walk_elements, data, implicit, True, wanted) == expected
    assert outcome(compiled.walk_elements, cases[0][0], True, True, wanted)[1][1] == {
        0x00080016: (b"", b"1.2\0"),
        0x0020000D: (b"", b"1.2.3\0"),
    }
