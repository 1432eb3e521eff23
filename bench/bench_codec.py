"""Codec benchmarks, each on both implementations.

    pytest bench/bench_codec.py --benchmark-only --benchmark-columns=median,ops \
        --benchmark-group-by=func,param:pdu_size

Framing plus reassembly feeds a pre-encoded stream to a PDUReader in 64 KiB
reads through get_buffer/buffer_updated, as asyncio does, and every P-DATA
body to an Assembler that collects the dataset in memory.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from dicomnet.core.pdu import AssociateRQ, PresentationContextRQ, UserInformation

DATASET_SIZE = 100 * 1000 * 1000
READ_SIZE = 64 * 1024
C_STORE_RQ = {
    0x0100: 0x0001,
    0x0110: 7,
    0x0002: "1.2.840.10008.5.1.4.1.1.2",
    0x1000: "1.2.826.0.1.3680043.8.498.12345678901234567890123456789",
    0x0700: 0,
    0x0800: 0x0001,
}

_STREAMS: dict[int, tuple[bytes, list[bytes]]] = {}


def stream_for(codec: ModuleType, pdu_size: int) -> tuple[bytes, list[bytes]]:
    """One C-STORE message of 100 MB as wire bytes, and its P-DATA bodies."""
    if pdu_size not in _STREAMS:
        dataset = bytes(range(256)) * (DATASET_SIZE // 256)
        command = codec.encode_command(C_STORE_RQ)
        wire = b"".join(bytes(b) for b in codec.fragment_message(1, command, dataset, pdu_size))
        reader = codec.PDUReader(max_pdu_length=pdu_size)
        reader.feed(wire)
        bodies = []
        while (pdu := reader.next_pdu()) is not None:
            bodies.append(bytes(pdu[1]))
        _STREAMS[pdu_size] = (wire, bodies)
    return _STREAMS[pdu_size]


@pytest.mark.parametrize("pdu_size", [16 * 1024, 64 * 1024, 1024 * 1024])
def test_framing_and_reassembly(benchmark, codec: ModuleType, pdu_size: int) -> None:
    wire, _ = stream_for(codec, pdu_size)
    source = memoryview(wire)

    def receive() -> int:
        reader = codec.PDUReader(max_pdu_length=pdu_size)
        assembler = codec.Assembler()
        total = 0
        offset = 0
        size = len(source)
        while offset < size:  # one "recv" of at most READ_SIZE into the reader's buffer
            target = reader.get_buffer(-1)
            count = min(len(target), READ_SIZE, size - offset)
            target[:count] = source[offset : offset + count]
            reader.buffer_updated(count)
            offset += count
            while (pdu := reader.next_pdu()) is not None:
                for _, _, dataset in assembler.feed(pdu[1]):
                    total += len(dataset)
        return total

    assert benchmark.pedantic(receive, rounds=3, iterations=1) == DATASET_SIZE


@pytest.mark.parametrize("pdu_size", [16 * 1024])
def test_reassembly_to_memory(benchmark, codec: ModuleType, pdu_size: int) -> None:
    _, bodies = stream_for(codec, pdu_size)

    def reassemble() -> int:
        assembler = codec.Assembler()
        total = 0
        for body in bodies:
            for _, _, dataset in assembler.feed(body):
                total += len(dataset)
        return total

    assert benchmark.pedantic(reassemble, rounds=3, iterations=1) == DATASET_SIZE


def test_fragment_for_send(benchmark, codec: ModuleType) -> None:
    dataset = memoryview(bytes(DATASET_SIZE))
    command = codec.encode_command(C_STORE_RQ)
    buffers = benchmark.pedantic(
        lambda: codec.fragment_message(1, command, dataset, 16 * 1024), rounds=3, iterations=1
    )
    assert sum(len(b) for b in buffers[1::2]) == DATASET_SIZE + len(command)


def test_command_sets_encode_decode_10000(benchmark, codec: ModuleType) -> None:
    def run() -> int:
        count = 0
        for message_id in range(10_000):
            fields = dict(C_STORE_RQ)
            fields[0x0110] = message_id
            count += len(codec.decode_command(codec.encode_command(fields)))
        return count

    assert benchmark.pedantic(run, rounds=3, iterations=1) == 10_000 * 6


def test_associate_rq_128_contexts(benchmark, codec: ModuleType) -> None:
    syntaxes = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50")
    rq = AssociateRQ(
        "ANY-SCP",
        "DICOMNET",
        tuple(
            PresentationContextRQ(2 * i + 1, f"1.2.840.10008.5.1.4.1.1.{i + 1}", syntaxes)
            for i in range(128)
        ),
        UserInformation(max_length=262144, implementation_class_uid="1.2.3.4"),
    )

    def run() -> AssociateRQ:
        return codec.decode_pdu(1, codec.encode_pdu(rq)[6:])

    assert benchmark.pedantic(run, rounds=20, iterations=5) == rq


def test_answer_an_rq_of_128_contexts_with_64_syntaxes_each(benchmark, codec: ModuleType) -> None:
    """The largest request a peer may send (about 216 KB): decode and negotiate it.

    Hostile input 21 asks for less than 50 ms of CPU; parsing must stay linear.
    """
    from dicomnet.core.negotiation import AcceptorPolicy, SupportedContext, negotiate_as_acceptor
    from dicomnet.testing import raw

    ct = "1.2.840.10008.5.1.4.1.1.2"
    syntaxes = [f"1.2.840.10008.1.2.4.{n}" for n in range(63)] + ["1.2.840.10008.1.2"]
    contexts = [raw.presentation_context(1 + 2 * i, ct, syntaxes) for i in range(128)]
    body = raw.associate_rq("ANY-SCP", contexts=contexts)[6:]
    policy = AcceptorPolicy(
        ae_title="ANY-SCP", supported_contexts=(SupportedContext(ct, ("1.2.840.10008.1.2",)),)
    )

    def run() -> object:
        return negotiate_as_acceptor(codec.decode_pdu(1, body), policy)

    answer = benchmark.pedantic(run, rounds=20, iterations=5)
    assert len(answer.presentation_contexts) == 128
