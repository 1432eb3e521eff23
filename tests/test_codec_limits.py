"""Local limits of any size behave alike in both codecs (Python ints, not C ones)."""

from __future__ import annotations

from types import ModuleType

import pytest


def test_limits_beyond_32_bits(codec: ModuleType) -> None:
    reader = codec.PDUReader(max_pdu_length=2**32, max_associate_length=2**63)
    reader.feed(bytes([0x04, 0, 0, 0, 0, 10]) + bytes(10))
    pdu = reader.next_pdu()
    assert pdu is not None and pdu[0] == 0x04 and len(pdu[1]) == 10
    assert len(codec.fragment_message(1, b"\0\0", None, 2**64)) == 2


def test_out_of_range_arguments_are_value_errors(codec: ModuleType) -> None:
    with pytest.raises(ValueError):
        codec.PDUReader().buffer_updated(2**64)
    with pytest.raises(ValueError):
        codec.fragment_message(2**40, b"\0\0", None, 100)
    with pytest.raises(ValueError):
        codec.fragment_message(1, b"\0\0", None, 7)
