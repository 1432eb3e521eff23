"""P-DATA-TF PDVs, message fragmentation and reassembly (PS3.8 9.3.5, Annex E).

Covers parse_pdata, fragment_message and Assembler on both codecs: byte-exact
layouts, the zero-copy promise, every fragmentation rule the Assembler
enforces, and that every legal layout of one message gives the same result.
"""

from __future__ import annotations

import mmap
from types import ModuleType

import pytest

from dicomnet.core.pdu import UNLIMITED_SEND_PDU_LENGTH
from dicomnet.errors import CommandSetError, PDUError, PDVError, ProtocolError

# C-ECHO-RQ (no dataset) and C-STORE-RQ (dataset follows), implicit VR LE.
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
DATASET = bytes(range(256)) * 40  # 10240 bytes, even


def pdv(context_id: int, control: int, fragment: bytes) -> bytes:
    """One PDV item: 4-byte length, context ID, control header, fragment."""
    return (len(fragment) + 2).to_bytes(4, "big") + bytes((context_id, control)) + fragment


def join(buffers: list[object]) -> bytes:
    return b"".join(bytes(b) for b in buffers)  # type: ignore[call-overload]


def pdata_bodies(codec: ModuleType, stream: bytes) -> list[bytes]:
    """The P-DATA-TF bodies of a stream, framed by the codec's reader."""
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(stream)
    bodies = []
    for _ in range(100_000):
        item = reader.next_pdu()
        if item is None:
            return bodies
        assert item[0] == 0x04
        bodies.append(bytes(item[1]))
    raise AssertionError("unbounded stream")


def assemble(codec: ModuleType, bodies: list[bytes], assembler: object = None) -> list[tuple]:
    assembler = assembler or codec.Assembler()
    out: list[tuple] = []
    for body in bodies:
        out.extend(assembler.feed(body))  # type: ignore[attr-defined]
    return out


# -- parse_pdata ----------------------------------------------------------------


def test_parse_one_pdv(codec: ModuleType) -> None:
    body = bytes.fromhex("00000006 03 01 0a0b0c0d")  # length 6, context 3, command, 4 bytes
    [(context_id, control, fragment)] = codec.parse_pdata(body)
    assert (context_id, control, bytes(fragment)) == (3, 0x01, b"\x0a\x0b\x0c\x0d")
    assert isinstance(fragment, memoryview)
    assert fragment.obj is body


def test_parse_several_pdvs_and_reserved_control_bits(codec: ModuleType) -> None:
    body = pdv(1, 0x01, b"ab") + pdv(1, 0xFF, b"") + pdv(5, 0xFC, b"wxyz")
    assert [(c, h, bytes(f)) for c, h, f in codec.parse_pdata(body)] == [
        (1, 0x01, b"ab"),
        (1, 0xFF, b""),
        (5, 0xFC, b"wxyz"),
    ]


def test_parse_accepts_bytearray_and_memoryview(codec: ModuleType) -> None:
    body = pdv(1, 3, b"1234")
    for buffer in (bytearray(body), memoryview(body)):
        assert bytes(codec.parse_pdata(buffer)[0][2]) == b"1234"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty body"),
        pytest.param(bytes.fromhex("00000000 01 03"), id="item-length 0"),
        pytest.param(bytes.fromhex("00000001 01 03"), id="item-length 1"),
        pytest.param(bytes.fromhex("00000003 01 03"), id="overrun by one"),
        pytest.param(bytes.fromhex("ffffffff 01 03 0000"), id="item-length near 2**32"),
        pytest.param(bytes.fromhex("80000002 01 03"), id="item-length top bit"),
        pytest.param(pdv(1, 3, b"ab") + b"\x00", id="one stray byte"),
        pytest.param(pdv(1, 3, b"ab") + b"\x00\x00\x00\x02\x01", id="five stray bytes"),
        pytest.param(pdv(1, 3, b"ab") + pdv(1, 3, b"cd")[:-1], id="second PDV cut"),
    ],
)
def test_parse_errors(codec: ModuleType, body: bytes) -> None:
    with pytest.raises(PDUError):
        codec.parse_pdata(body)


# -- fragment_message ------------------------------------------------------------------


def test_fragment_byte_exact(codec: ModuleType) -> None:
    command = b"\x01\x02\x03\x04"
    dataset = b"\x05\x06"
    buffers = codec.fragment_message(1, command, dataset, 0)
    assert [bytes(b) for b in buffers] == [
        bytes.fromhex("04 00 0000000a00000006 01 03"),  # PDU length 10, PDV 6, last command
        command,
        bytes.fromhex("04 00 0000000800000004 01 02"),  # PDU length 8, PDV 4, last dataset
        dataset,
    ]
    assert [type(b) for b in buffers] == [bytes, memoryview, bytes, memoryview]


def test_fragment_payloads_are_views_of_the_originals(codec: ModuleType) -> None:
    command = bytes(100)
    dataset = bytearray(1000)
    buffers = codec.fragment_message(3, command, dataset, 64)
    views = buffers[1::2]
    assert all(isinstance(v, memoryview) for v in views)
    assert all(isinstance(h, bytes) and len(h) == 12 for h in buffers[0::2])
    objects = [v.obj for v in views]
    assert objects[0] is command
    assert objects[-1] is dataset
    assert all(o is command or o is dataset for o in objects)


def test_fragment_from_mmap(codec: ModuleType) -> None:
    with mmap.mmap(-1, len(DATASET)) as mapped:
        mapped.write(DATASET)
        buffers = codec.fragment_message(1, b"\x00\x00", mapped, 4096)
        assert join(buffers[2:][1::2]) == DATASET
        del buffers


@pytest.mark.parametrize(
    ("max_pdu_length", "payload"),
    [
        (8, 2),  # the smallest: a 2-byte fragment
        (9, 2),
        (13, 6),  # odd: 7 rounded down to even
        (16382, 16376),
        (16384, 16378),
        (0, UNLIMITED_SEND_PDU_LENGTH - 6),  # 0 means unlimited
    ],
)
def test_fragment_sizes(codec: ModuleType, max_pdu_length: int, payload: int) -> None:
    command = bytes(range(200)) * 2
    dataset = bytes(3 * payload + 2)
    buffers = codec.fragment_message(1, command, dataset, max_pdu_length)
    headers, views = buffers[0::2], buffers[1::2]
    sizes = [len(v) for v in views]
    assert all(size <= payload and size % 2 == 0 for size in sizes)
    for head, view in zip(headers, views, strict=True):
        assert head[0] == 0x04
        assert int.from_bytes(head[2:6], "big") == len(view) + 6
        assert int.from_bytes(head[6:10], "big") == len(view) + 2
        assert head[10] == 1
        if max_pdu_length:
            assert len(view) + 6 <= max_pdu_length
    controls = [h[11] for h in headers]
    n_command = -(-len(command) // payload)
    assert controls == [1] * (n_command - 1) + [3] + [0] * 3 + [2]
    assert join(views[:n_command]) == command
    assert join(views[n_command:]) == dataset


def test_fragment_unlimited_splits_large_datasets(codec: ModuleType) -> None:
    dataset = bytes(3 * UNLIMITED_SEND_PDU_LENGTH)
    buffers = codec.fragment_message(1, b"\x00\x00", dataset, 0)
    sizes = [len(v) for v in buffers[3::2]]
    assert sizes[0] == UNLIMITED_SEND_PDU_LENGTH - 6
    assert sum(sizes) == len(dataset)


@pytest.mark.parametrize("max_pdu_length", [1, 2, 6, 7, -1])
def test_fragment_rejects_tiny_max(codec: ModuleType, max_pdu_length: int) -> None:
    with pytest.raises(ValueError):
        codec.fragment_message(1, b"\x00\x00", None, max_pdu_length)


def test_fragment_command_only(codec: ModuleType) -> None:
    buffers = codec.fragment_message(7, b"abcd", None, 0)
    assert len(buffers) == 2
    assert buffers[0][10:12] == b"\x07\x03"


def test_fragment_empty_dataset_sends_one_last_fragment(codec: ModuleType) -> None:
    buffers = codec.fragment_message(1, b"abcd", b"", 0)
    assert len(buffers) == 4
    assert buffers[2] == bytes.fromhex("04 00 00000006 00000002 01 02")
    assert len(buffers[3]) == 0


# -- reassembly of what fragment_message produced ------------------------------------------


@pytest.mark.parametrize("max_pdu_length", [0, 8, 13, 100, 16382])
def test_round_trip_command_only(codec: ModuleType, max_pdu_length: int) -> None:
    command = codec.encode_command(ECHO_FIELDS)
    stream = join(codec.fragment_message(1, command, None, max_pdu_length))
    [(context_id, decoded, dataset)] = assemble(codec, pdata_bodies(codec, stream))
    assert (context_id, decoded, dataset) == (1, ECHO_FIELDS, None)


@pytest.mark.parametrize("max_pdu_length", [0, 8, 13, 100, 16382])
def test_round_trip_command_and_dataset_in_memory(codec: ModuleType, max_pdu_length: int) -> None:
    command = codec.encode_command(STORE_FIELDS)
    stream = join(codec.fragment_message(5, command, DATASET, max_pdu_length))
    [(context_id, decoded, dataset)] = assemble(codec, pdata_bodies(codec, stream))
    assert (context_id, decoded) == (5, STORE_FIELDS)
    assert isinstance(dataset, bytearray)
    assert dataset == DATASET


class Sink:
    """A dataset sink that copies each view before returning, as the contract asks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, buffer: memoryview) -> None:
        assert isinstance(buffer, memoryview)
        self.chunks.append(bytes(buffer))


def test_round_trip_into_a_sink(codec: ModuleType) -> None:
    command = codec.encode_command(STORE_FIELDS)
    stream = join(codec.fragment_message(1, command, DATASET, 1000))
    calls = []
    sink = Sink()

    def on_command(context_id: int, fields: dict[int, object]) -> Sink:
        calls.append((context_id, fields))
        return sink

    assembler = codec.Assembler()
    assembler.on_command = on_command
    [(context_id, decoded, dataset)] = assemble(codec, pdata_bodies(codec, stream), assembler)
    assert (context_id, decoded) == (1, STORE_FIELDS)
    assert dataset is sink
    assert calls == [(1, STORE_FIELDS)]
    assert b"".join(sink.chunks) == DATASET
    assert len(sink.chunks) == -(-len(DATASET) // 994)


def test_on_command_returning_none_collects_in_memory(codec: ModuleType) -> None:
    command = codec.encode_command(STORE_FIELDS)
    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, fields: None
    stream = join(codec.fragment_message(1, command, DATASET, 0))
    [(_, _, dataset)] = assemble(codec, pdata_bodies(codec, stream), assembler)
    assert dataset == DATASET


def test_on_command_not_called_without_dataset(codec: ModuleType) -> None:
    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, fields: pytest.fail("no dataset was announced")
    stream = join(codec.fragment_message(1, codec.encode_command(ECHO_FIELDS), None, 0))
    assert assemble(codec, pdata_bodies(codec, stream), assembler)[0][2] is None


def test_empty_dataset_completes(codec: ModuleType) -> None:
    stream = join(codec.fragment_message(1, codec.encode_command(STORE_FIELDS), b"", 0))
    [(_, _, dataset)] = assemble(codec, pdata_bodies(codec, stream))
    assert dataset == b""


def test_messages_in_sequence_and_in_one_body(codec: ModuleType) -> None:
    echo = codec.encode_command(ECHO_FIELDS)
    store = codec.encode_command(STORE_FIELDS)
    body = pdv(1, 3, echo) + pdv(3, 3, store) + pdv(3, 2, b"xy") + pdv(1, 3, echo)
    out = assemble(codec, [body])
    assert [(c, f) for c, f, _ in out] == [(1, ECHO_FIELDS), (3, STORE_FIELDS), (1, ECHO_FIELDS)]
    assert [d for _, _, d in out] == [None, b"xy", None]


def test_in_message(codec: ModuleType) -> None:
    store = codec.encode_command(STORE_FIELDS)
    assembler = codec.Assembler()
    assert not assembler.in_message
    assembler.feed(pdv(1, 1, store[:10]))
    assert assembler.in_message
    assembler.feed(pdv(1, 3, store[10:]))
    assert assembler.in_message
    assert assembler.feed(pdv(1, 2, b"")) != []
    assert not assembler.in_message


# -- equivalent layouts ----------------------------------------------------------------


def layouts(command: bytes, dataset: bytes) -> dict[str, list[bytes]]:
    """Several legal ways (PS3.8 Annex E) to send one C-STORE on context 1."""
    two_byte = [pdv(1, 1, command[i : i + 2]) for i in range(0, len(command) - 2, 2)]
    two_byte.append(pdv(1, 3, command[-2:]))
    two_byte += [pdv(1, 0, dataset[i : i + 2]) for i in range(0, len(dataset) - 2, 2)]
    two_byte.append(pdv(1, 2, dataset[-2:]))
    half = len(dataset) // 2 & ~1
    return {
        "one PDU": [pdv(1, 3, command) + pdv(1, 2, dataset)],
        "each PDV its own PDU": [
            pdv(1, 3, command),
            pdv(1, 0, dataset[:half]),
            pdv(1, 2, dataset[half:]),
        ],
        "2-byte PDVs, one per PDU": two_byte,
        "2-byte PDVs, all in one PDU": [b"".join(two_byte)],
        "command split, dataset and command end together": [
            pdv(1, 1, command[:8]),
            pdv(1, 3, command[8:]) + pdv(1, 0, dataset[:half]),
            pdv(1, 2, dataset[half:]),
        ],
        "control bits 2-7 set": [pdv(1, 0xFF, command) + pdv(1, 0xFE, dataset)],
    }


def test_equivalent_layouts_give_the_same_message(codec: ModuleType) -> None:
    command = codec.encode_command(STORE_FIELDS)
    dataset = DATASET[:600]
    results = {name: assemble(codec, bodies) for name, bodies in layouts(command, dataset).items()}
    for name, result in results.items():
        assert result == [(1, STORE_FIELDS, bytearray(dataset))], name


def test_thousands_of_two_byte_pdvs(codec: ModuleType) -> None:
    command = codec.encode_command(STORE_FIELDS)
    body = pdv(1, 3, command) + b"".join(pdv(1, 0, DATASET[i : i + 2]) for i in range(0, 8190, 2))
    body += pdv(1, 2, DATASET[8190:])
    [(_, _, dataset)] = assemble(codec, [body])
    assert dataset == DATASET


# -- Assembler rule violations -----------------------------------------------------------


def violations(codec: ModuleType) -> dict[str, tuple[type[ProtocolError], list[bytes]]]:
    echo = codec.encode_command(ECHO_FIELDS)
    store = codec.encode_command(STORE_FIELDS)
    no_data_set_type = codec.encode_command({0x00000100: 0x0030, 0x00000110: 1})
    return {
        "dataset before any command": (PDVError, [pdv(1, 2, b"ab")]),
        "dataset before the last command fragment": (
            PDVError,
            [pdv(1, 1, store[:10]), pdv(1, 0, b"ab")],
        ),
        "command while a dataset is expected": (PDVError, [pdv(1, 3, store), pdv(1, 3, echo)]),
        "context change inside the command": (
            PDVError,
            [pdv(1, 1, store[:10]), pdv(3, 3, store[10:])],
        ),
        "context change between command and dataset": (
            PDVError,
            [pdv(1, 3, store), pdv(3, 2, b"ab")],
        ),
        "context change inside the dataset": (
            PDVError,
            [pdv(1, 3, store) + pdv(1, 0, b"ab"), pdv(3, 2, b"cd")],
        ),
        "dataset after a command announcing none": (PDVError, [pdv(1, 3, echo) + pdv(1, 2, b"ab")]),
        "odd command fragment": (PDVError, [pdv(1, 1, store[:9])]),
        "odd dataset fragment": (PDVError, [pdv(1, 3, store), pdv(1, 2, b"abc")]),
        "empty P-DATA": (PDUError, [b""]),
        "PDV overrun": (PDUError, [bytes.fromhex("00000010 01 03 0000")]),
        "command without CommandDataSetType": (CommandSetError, [pdv(1, 3, no_data_set_type)]),
        "garbage command": (CommandSetError, [pdv(1, 3, b"\x08\x00\x16\x00\x02\x00\x00\x00ab")]),
        "empty command": (CommandSetError, [pdv(1, 3, b"")]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "dataset before any command",
        "dataset before the last command fragment",
        "command while a dataset is expected",
        "context change inside the command",
        "context change between command and dataset",
        "context change inside the dataset",
        "dataset after a command announcing none",
        "odd command fragment",
        "odd dataset fragment",
        "empty P-DATA",
        "PDV overrun",
        "command without CommandDataSetType",
        "garbage command",
        "empty command",
    ],
)
def test_assembler_rule_violations(codec: ModuleType, case: str) -> None:
    error, bodies = violations(codec)[case]
    assembler = codec.Assembler()
    with pytest.raises(error) as caught:
        assemble(codec, bodies, assembler)
    assert type(caught.value) is error
    with pytest.raises(error) as again:  # poisoned: the same error on any later call
        assembler.feed(pdv(1, 3, codec.encode_command(ECHO_FIELDS)))
    assert again.value is caught.value


def test_max_command_length(codec: ModuleType) -> None:
    command = codec.encode_command(ECHO_FIELDS)
    assert len(assemble(codec, [pdv(1, 3, command)], codec.Assembler(len(command)))) == 1
    assembler = codec.Assembler(len(command) - 2)
    assembler.feed(pdv(1, 1, command[:20]))
    with pytest.raises(PDVError):
        assembler.feed(pdv(1, 3, command[20:]))


def test_context_ids_enforced(codec: ModuleType) -> None:
    echo = codec.encode_command(ECHO_FIELDS)
    assembler = codec.Assembler()
    assert assembler.context_ids is None
    assert assembler.feed(pdv(9, 3, echo))[0][0] == 9  # any ID while unset
    assembler.context_ids = {1, 3}
    assert assembler.feed(pdv(3, 3, echo))[0][0] == 3
    with pytest.raises(PDVError):
        assembler.feed(pdv(5, 3, echo))


def test_context_ids_checked_on_dataset_fragments(codec: ModuleType) -> None:
    assembler = codec.Assembler()
    assembler.context_ids = frozenset({1})
    with pytest.raises(PDVError):
        assembler.feed(pdv(1, 3, codec.encode_command(STORE_FIELDS)) + pdv(2, 2, b"ab"))


def test_sink_error_propagates_and_poisons(codec: ModuleType) -> None:
    class BrokenSink:
        def write(self, buffer: memoryview) -> None:
            raise OSError("disk full")

    assembler = codec.Assembler()
    assembler.on_command = lambda context_id, fields: BrokenSink()
    store = codec.encode_command(STORE_FIELDS)
    with pytest.raises(OSError, match="disk full") as caught:
        assembler.feed(pdv(1, 3, store) + pdv(1, 2, b"ab"))
    with pytest.raises(OSError) as again:
        assembler.feed(pdv(1, 3, codec.encode_command(ECHO_FIELDS)))
    assert again.value is caught.value


class _CountingSink:
    def __init__(self) -> None:
        self.received = 0

    def write(self, buffer: object) -> None:
        self.received += len(buffer)  # type: ignore[arg-type]


@pytest.mark.parametrize("streamed", [False, True])
def test_dataset_length_limits(codec: ModuleType, streamed: bool) -> None:
    """A dataset exactly at its limit passes; one byte-pair past it is refused."""
    command = codec.encode_command(STORE_FIELDS)

    def fresh(limit: int) -> object:
        assembler = codec.Assembler()
        if streamed:
            assembler.on_command = lambda context_id, fields: _CountingSink()
            assembler.max_dataset_length = limit
            assembler.max_buffered_dataset_length = 2  # not the one that applies
        else:
            assembler.max_buffered_dataset_length = limit
            assembler.max_dataset_length = 2
        return assembler

    halves = [pdv(1, 0, DATASET[:5120]), pdv(1, 2, DATASET[5120:])]
    at_limit = fresh(len(DATASET))
    assert len(assemble(codec, [pdv(1, 3, command), *halves], at_limit)) == 1
    assert at_limit.max_dataset_length == (len(DATASET) if streamed else 2)  # type: ignore[attr-defined]
    over = fresh(len(DATASET) - 2)
    assemble(codec, [pdv(1, 3, command), halves[0]], over)
    with pytest.raises(PDVError, match="dataset longer than"):
        over.feed(halves[1])  # type: ignore[attr-defined]
    unlimited = codec.Assembler()  # 0: no limit, the default
    assert unlimited.max_dataset_length == 0 and unlimited.max_buffered_dataset_length == 0
    assert len(assemble(codec, [pdv(1, 3, command), *halves], unlimited)) == 1
