"""The data-phase pump: every whole P-DATA-TF PDU of a receive buffer in one call.

:meth:`Assembler.pump` frames, checks and reassembles PDUs straight out of a
:class:`PDUReader`, writes dataset fragments to a file sink's descriptor and
returns only for a completed message; any other PDU, and any header that
breaks a limit, is left in the reader for the PS3.8 state table. Every test
runs on both codecs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dicomnet.errors import PDVError, UnrecognizedPDU

ECHO_FIELDS = {
    0x00000002: "1.2.840.10008.1.1",
    0x00000100: 0x0030,
    0x00000110: 7,
    0x00000800: 0x0101,
}
STORE_FIELDS = {
    0x00000002: "1.2.840.10008.5.1.4.1.1.7",
    0x00000100: 0x0001,
    0x00000110: 9,
    0x00000700: 0,
    0x00000800: 0x0000,
    0x00001000: "1.2.3.4.5.6",
}
RELEASE_RQ = bytes.fromhex("05 00 00000004 00000000")


def dataset_bytes(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(size))


def stream(codec: ModuleType, fields: dict[int, Any], dataset: bytes | None, pdu: int) -> bytes:
    command = codec.encode_command(fields)
    return b"".join(bytes(b) for b in codec.fragment_message(1, command, dataset, pdu))


class FileSink:
    """A file sink as the storage gives one: an open descriptor and one call at the end."""

    def __init__(
        self, path: Path, head_length: int = 0, *, flags: int | None = None, digest: bool = False
    ) -> None:
        self.path = path
        if flags is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.fd = os.open(path, flags, 0o600)
        self.head_length = head_length
        self.wants_digest = digest
        self.calls: list[tuple[int, int, bytes, bytes]] = []

    def fileno(self) -> int:
        return self.fd

    def finished(self, size: int, error: int, digest: bytes, head: bytes) -> None:
        self.calls.append((size, error, digest, head))
        os.close(self.fd)

    def write(self, fragment: Any) -> None:  # pragma: no cover - a file sink is never written
        raise AssertionError("the codec writes a file sink's descriptor itself")


def pump_all(codec: ModuleType, assembler: Any, reader: Any) -> list[tuple]:
    messages: list[tuple] = []
    for _ in range(10_000):
        completed = assembler.pump(reader)
        if completed is None:
            return messages
        messages.extend(completed)
    raise AssertionError("pump never ran dry")


def test_pump_returns_each_message_then_none(codec: ModuleType) -> None:
    data = dataset_bytes(10_000)
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(
        stream(codec, ECHO_FIELDS, None, 4096)
        + stream(codec, STORE_FIELDS, data, 1024)
        + stream(codec, ECHO_FIELDS, None, 4096)
    )
    assembler = codec.Assembler()
    first = assembler.pump(reader)
    assert [(c, m[0x0100], d) for c, m, d in first] == [(1, 0x0030, None)]
    [(context_id, command, dataset)] = assembler.pump(reader)
    assert (context_id, command[0x1000], bytes(dataset)) == (1, "1.2.3.4.5.6", data)
    assert [m[0x0100] for _, m, _ in assembler.pump(reader)] == [0x0030]
    assert assembler.pump(reader) is None
    assert reader.pending == 0
    assert assembler.pumped == 1 + 1 + 10 + 1  # a PDU per fragment of 1018 bytes


def test_pump_leaves_other_pdus_for_the_state_table(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(stream(codec, ECHO_FIELDS, None, 4096) + RELEASE_RQ)
    assembler = codec.Assembler()
    assert len(assembler.pump(reader)) == 1
    assert assembler.pump(reader) is None
    assert assembler.pump(reader) is None  # still there, untouched
    pdu_type, body = reader.next_pdu()
    assert (pdu_type, bytes(body)) == (0x05, bytes(4))


def test_pump_leaves_a_bad_header_for_evt19(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(stream(codec, ECHO_FIELDS, None, 4096) + bytes.fromhex("09 00 00000004 00000000"))
    assembler = codec.Assembler()
    assert len(assembler.pump(reader)) == 1
    assert assembler.pump(reader) is None
    with pytest.raises(UnrecognizedPDU):
        reader.next_pdu()


def test_pump_waits_for_the_rest_of_a_pdu(codec: ModuleType) -> None:
    whole = stream(codec, ECHO_FIELDS, None, 4096)
    reader = codec.PDUReader()
    assembler = codec.Assembler()
    reader.feed(whole[:-3])
    assert assembler.pump(reader) is None
    reader.feed(whole[-3:])
    assert len(assembler.pump(reader)) == 1


@pytest.mark.parametrize("digest", [True, False])
def test_pump_writes_a_file_sink_itself(codec: ModuleType, tmp_path: Path, digest: bool) -> None:
    data = dataset_bytes(300_000, seed=3)
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(stream(codec, STORE_FIELDS, data, 1024))  # 295 PDUs: several writev batches
    sink = FileSink(tmp_path / "out", head_length=1000, digest=digest)
    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, command: sink
    [(_, _, dataset)] = pump_all(codec, assembler, reader)
    assert dataset is sink
    assert (tmp_path / "out").read_bytes() == data
    [(size, error, hashed, head)] = sink.calls
    assert (size, error, head) == (len(data), 0, data[:1000])
    expected = hashlib.sha256(data).digest() if digest and codec.PUMP_DIGEST else b""
    assert hashed == expected


def test_head_shorter_than_asked_is_the_whole_dataset(codec: ModuleType, tmp_path: Path) -> None:
    data = dataset_bytes(100)
    reader = codec.PDUReader()
    reader.feed(stream(codec, STORE_FIELDS, data, 4096))
    sink = FileSink(tmp_path / "out", head_length=4096)
    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, command: sink
    pump_all(codec, assembler, reader)
    assert sink.calls == [(100, 0, b"", data)]


@pytest.mark.parametrize("chunk", [1, 7, 1000, 65536])
def test_any_receive_split_writes_the_same_file(
    codec: ModuleType, tmp_path: Path, chunk: int
) -> None:
    data = dataset_bytes(20_000, seed=chunk)
    wire = stream(codec, STORE_FIELDS, data, 512) + stream(codec, ECHO_FIELDS, None, 512)
    reader = codec.PDUReader()
    sink = FileSink(tmp_path / "out", head_length=64)
    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, command: sink
    messages: list[tuple] = []
    for offset in range(0, len(wire), chunk):
        reader.feed(wire[offset : offset + chunk])
        messages.extend(pump_all(codec, assembler, reader))
    assert [m[0x0100] for _, m, _ in messages] == [0x0001, 0x0030]
    assert (tmp_path / "out").read_bytes() == data


def test_a_failed_write_reaches_the_sink_and_the_association_goes_on(
    codec: ModuleType, tmp_path: Path
) -> None:
    target = tmp_path / "read-only"
    target.write_bytes(b"")
    sink = FileSink(target, flags=os.O_RDONLY)  # every write fails with EBADF
    reader = codec.PDUReader()
    reader.feed(stream(codec, STORE_FIELDS, dataset_bytes(5000), 1024))
    reader.feed(stream(codec, ECHO_FIELDS, None, 1024))
    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, command: sink
    messages = pump_all(codec, assembler, reader)
    assert [m[0x0100] for _, m, _ in messages] == [0x0001, 0x0030]
    [(size, error, _, _)] = sink.calls
    assert (size, error) == (5000, 9)  # EBADF


def test_dataset_limit_holds_for_a_file_sink(codec: ModuleType, tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "out")
    reader = codec.PDUReader()
    reader.feed(stream(codec, STORE_FIELDS, dataset_bytes(5000), 1024))
    assembler = codec.Assembler()
    assembler.max_dataset_length = 4096
    assembler.on_command = lambda context_id, command: sink
    with pytest.raises(PDVError, match="longer than 4096"):
        pump_all(codec, assembler, reader)
    with pytest.raises(PDVError):  # poisoned
        assembler.pump(reader)
    assert sink.calls == []
    os.close(sink.fd)


def test_pump_refuses_a_context_not_accepted(codec: ModuleType) -> None:
    reader = codec.PDUReader()
    reader.feed(stream(codec, ECHO_FIELDS, None, 4096))
    assembler = codec.Assembler()
    assembler.context_ids = {3, 5}
    with pytest.raises(PDVError, match="context 1"):
        assembler.pump(reader)
    assert assembler.context_ids == {3, 5}


def test_pump_and_feed_agree(codec: ModuleType) -> None:
    data = dataset_bytes(9000)
    wire = stream(codec, STORE_FIELDS, data, 2048) * 3
    reader = codec.PDUReader()
    reader.feed(wire)
    pumped = pump_all(codec, codec.Assembler(), reader)
    framer = codec.PDUReader()
    framer.feed(wire)
    fed: list[tuple] = []
    feeder = codec.Assembler()
    while (item := framer.next_pdu()) is not None:
        fed.extend(feeder.feed(item[1]))
    assert [(c, m, bytes(d)) for c, m, d in pumped] == [(c, m, bytes(d)) for c, m, d in fed]
