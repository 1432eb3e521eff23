"""Property tests of both codecs (Hypothesis).

Well-formed values round-trip, also across the two implementations; random
and mutated bytes fed to every entry point that takes peer input raise only
ProtocolError subclasses, and every loop over peer input ends.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomnet.core import _pdu_py
from dicomnet.core.pdu import (
    Abort,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    PDataTF,
    PresentationContextAC,
    PresentationContextRQ,
    ReleaseRP,
    ReleaseRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomnet.errors import ProtocolError

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies for well-formed values --------------------------------------------------------

uids = (
    st.lists(st.integers(0, 10**12), min_size=1, max_size=10)
    .map(lambda parts: ".".join(map(str, parts)))
    .filter(lambda uid: len(uid) <= 64)
)
ae_titles = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16).map(
    lambda title: title.strip(" ")
)
latin1_text = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=16)
byte = st.integers(0, 0xFF)
ushort = st.integers(0, 0xFFFF)

user_information = st.builds(
    UserInformation,
    max_length=st.none() | st.integers(0, 0xFFFFFFFF),
    implementation_class_uid=st.just("") | uids,
    implementation_version_name=st.none() | latin1_text,
    async_ops_window=st.none() | st.builds(AsyncOpsWindow, ushort, ushort),
    role_selections=st.lists(
        st.builds(RoleSelection, uids, st.booleans(), st.booleans()), max_size=3
    ).map(tuple),
    sop_class_extended=st.lists(
        st.builds(SOPClassExtendedNegotiation, uids, st.binary(max_size=40)), max_size=2
    ).map(tuple),
    sop_class_common_extended=st.lists(
        st.builds(
            SOPClassCommonExtendedNegotiation, uids, uids, st.lists(uids, max_size=3).map(tuple)
        ),
        max_size=2,
    ).map(tuple),
    user_identity=st.none()
    | st.builds(
        UserIdentityRQ, byte, st.booleans(), st.binary(max_size=300), st.binary(max_size=50)
    ),
    user_identity_ac=st.none() | st.builds(UserIdentityAC, st.binary(max_size=300)),
)
associate_rq = st.builds(
    AssociateRQ,
    called_ae_title=ae_titles,
    calling_ae_title=ae_titles,
    presentation_contexts=st.lists(
        st.builds(PresentationContextRQ, byte, uids, st.lists(uids, max_size=4).map(tuple)),
        max_size=5,
    ).map(tuple),
    user_information=user_information,
    application_context=uids,
    protocol_version=ushort,
)
associate_ac = st.builds(
    AssociateAC,
    called_ae_title=ae_titles,
    calling_ae_title=ae_titles,
    presentation_contexts=st.lists(
        st.builds(PresentationContextAC, byte, byte, st.just("") | uids), max_size=5
    ).map(tuple),
    user_information=user_information,
    application_context=uids,
    protocol_version=ushort,
)
pdata_tf = st.builds(
    PDataTF,
    st.lists(st.tuples(byte, byte, st.binary(max_size=200)), min_size=1, max_size=5).map(tuple),
)
pdus = st.one_of(
    associate_rq,
    associate_ac,
    st.builds(AssociateRJ, byte, byte, byte),
    st.builds(Abort, byte, byte),
    st.just(ReleaseRQ()),
    st.just(ReleaseRP()),
    pdata_tf,
)


# -- round trips ------------------------------------------------------------------------------


@PROPERTY
@given(value=pdus)
def test_every_pdu_round_trips(codec: ModuleType, value: Any) -> None:
    encoded = codec.encode_pdu(value)
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(encoded)
    pdu_type, body = reader.next_pdu()
    assert reader.next_pdu() is None
    assert codec.decode_pdu(pdu_type, body) == value


@PROPERTY
@given(value=pdus)
def test_codecs_agree(codec: ModuleType, value: Any) -> None:
    encoded = codec.encode_pdu(value)
    assert encoded == _pdu_py.encode_pdu(value)
    assert _pdu_py.decode_pdu(encoded[0], encoded[6:]) == value
    assert codec.decode_pdu(encoded[0], encoded[6:]) == value


command_values = st.fixed_dictionaries(
    {0x00000100: ushort, 0x00000800: ushort},
    optional={
        0x00000002: uids,
        0x00000110: ushort,
        0x00000600: ae_titles.map(lambda s: s.rstrip(" ")),
        0x00000900: ushort,
        0x00000901: st.lists(st.integers(0, 0xFFFFFFFF), max_size=4).map(tuple),
        0x00000902: st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=64),
        0x00001000: uids,
        0x00001020: ushort,
        0x00000001: st.integers(0, 0xFFFFFFFF),
        0x00000999: st.binary(max_size=20).map(lambda b: b + b"\x01" if len(b) % 2 else b),
    },
)


@PROPERTY
@given(fields=command_values)
def test_command_sets_round_trip(codec: ModuleType, fields: dict[int, object]) -> None:
    encoded = codec.encode_command(fields)
    assert encoded == _pdu_py.encode_command(fields)
    assert codec.decode_command(encoded) == fields


@PROPERTY
@given(
    fields=command_values,
    dataset=st.none() | st.binary(max_size=3000).map(lambda b: b[: len(b) & ~1]),
    max_pdu_length=st.just(0) | st.integers(8, 2000),
    context_id=byte,
    chunk=st.integers(1, 5000),
)
def test_messages_round_trip_through_reader_and_assembler(
    codec: ModuleType,
    fields: dict[int, object],
    dataset: bytes | None,
    max_pdu_length: int,
    context_id: int,
    chunk: int,
) -> None:
    fields = {**fields, 0x00000800: 0x0101 if dataset is None else 0x0001}
    buffers = codec.fragment_message(
        context_id, codec.encode_command(fields), dataset, max_pdu_length
    )
    stream = b"".join(bytes(b) for b in buffers)
    reader = codec.PDUReader(max_pdu_length=max_pdu_length)
    assembler = codec.Assembler()
    completed = []
    for offset in range(0, len(stream), chunk):
        reader.feed(stream[offset : offset + chunk])
        while (item := reader.next_pdu()) is not None:
            completed += assembler.feed(item[1])
    assert completed == [(context_id, fields, None if dataset is None else bytearray(dataset))]
    assert not assembler.in_message


# -- hostile input raises only ProtocolError -----------------------------------------------------


def consume(codec: ModuleType, stream: bytes, chunk: int = 1 << 16) -> int:
    """Push ``stream`` through reader, decoders and assembler; count the PDUs seen.

    Each entry point may raise a ProtocolError; anything else fails the test.
    """
    reader = codec.PDUReader(max_pdu_length=4096, max_associate_length=8192)
    assembler = codec.Assembler()
    seen = 0
    try:
        for offset in range(0, len(stream), chunk):
            reader.feed(stream[offset : offset + chunk])
            for _ in range(len(stream) + 1):
                item = reader.next_pdu()
                if item is None:
                    break
                seen += 1
                pdu_type, body = item
                try:
                    codec.decode_pdu(pdu_type, body)
                except ProtocolError:
                    pass
                if pdu_type == 0x04:
                    assembler.feed(body)
            else:
                raise AssertionError("next_pdu did not stop")
    except ProtocolError:
        pass
    return seen


def valid_corpus() -> list[bytes]:
    rq = AssociateRQ(
        "SCP",
        "SCU",
        (PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
        UserInformation(
            max_length=16384,
            implementation_class_uid="1.2.3",
            implementation_version_name="V1",
            async_ops_window=AsyncOpsWindow(1, 1),
            role_selections=(RoleSelection("1.2.3.4", True, True),),
            sop_class_extended=(SOPClassExtendedNegotiation("1.2.5", b"\x01"),),
            sop_class_common_extended=(SOPClassCommonExtendedNegotiation("1.2", "1.3", ("1.4",)),),
            user_identity=UserIdentityRQ(2, True, b"user", b"pass"),
        ),
    )
    ac = AssociateAC(
        "SCP",
        "SCU",
        (PresentationContextAC(1, 0, "1.2.840.10008.1.2"),),
        UserInformation(
            max_length=0, implementation_class_uid="1.2.3", user_identity_ac=UserIdentityAC(b"ok")
        ),
    )
    command = _pdu_py.encode_command(
        {
            0x00000002: "1.2.840.10008.5.1.4.1.1.7",
            0x00000100: 1,
            0x00000110: 1,
            0x00000800: 0,
            0x00001000: "1.2",
        }
    )
    message = b"".join(bytes(b) for b in _pdu_py.fragment_message(1, command, bytes(64), 40))
    return [
        _pdu_py.encode_pdu(rq),
        _pdu_py.encode_pdu(ac),
        _pdu_py.encode_pdu(AssociateRJ(1, 1, 1)) + _pdu_py.encode_pdu(Abort(2, 6)),
        message,
        _pdu_py.encode_pdu(PDataTF(((1, 3, command),))),
    ]


CORPUS = valid_corpus()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid stream with a few bytes changed, inserted, deleted or cut off."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "set" and data:
            data[position] = draw(
                st.sampled_from([0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF]) | byte
            )
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 4))]
        else:
            del data[position:]
    return bytes(data)


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_every_single_byte_change_and_cut_of_valid_streams(codec: ModuleType, index: int) -> None:
    """Exhaustive, not random: each byte set to a few values, and each truncation.

    One changed byte leaves every other length consistent, so the decoder gets
    past the outer checks and reaches each field's own length check.
    """
    stream = CORPUS[index]
    for position in range(len(stream)):
        original = stream[position]
        for new in {
            0x00,
            0x01,
            0x7F,
            0x80,
            0xFF,
            (original + 1) & 0xFF,
            (original - 1) & 0xFF,
            (original + 2) & 0xFF,
            (original - 2) & 0xFF,
        } - {original}:
            changed = stream[:position] + bytes((new,)) + stream[position + 1 :]
            consume(codec, changed)
            if position >= 6 and stream[0] in (1, 2):
                try:
                    codec.decode_pdu(stream[0], changed[6:])
                except ProtocolError:
                    pass
        consume(codec, stream[:position])


@PROPERTY
@given(stream=st.binary(max_size=2000), chunk=st.integers(1, 300))
def test_random_bytes_raise_only_protocol_errors(
    codec: ModuleType, stream: bytes, chunk: int
) -> None:
    consume(codec, stream, chunk)


@PROPERTY
@given(pdu_type=st.integers(1, 7), body=st.binary(max_size=600))
def test_random_bodies_raise_only_protocol_errors(
    codec: ModuleType, pdu_type: int, body: bytes
) -> None:
    stream = bytes((pdu_type, 0)) + len(body).to_bytes(4, "big") + body
    consume(codec, stream)
    try:
        codec.decode_pdu(pdu_type, body)
    except ProtocolError:
        pass


@PROPERTY
@given(stream=mutated(), chunk=st.integers(1, 500))
def test_mutated_pdus_raise_only_protocol_errors(
    codec: ModuleType, stream: bytes, chunk: int
) -> None:
    consume(codec, stream, chunk)


@PROPERTY
@given(data=st.binary(max_size=300))
def test_random_command_sets_raise_only_protocol_errors(codec: ModuleType, data: bytes) -> None:
    for candidate in (data, CORPUS[-1][12:][: len(data)] + data):
        try:
            codec.decode_command(candidate)
        except ProtocolError:
            pass


def framed(
    item_types: st.SearchStrategy[int], content: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    """Items whose headers are right for their content, so decoding reaches the content."""
    return st.tuples(item_types, content).map(
        lambda pair: bytes((pair[0], 0)) + len(pair[1]).to_bytes(2, "big") + pair[1]
    )


# Sub-item content: 2-byte length-prefixed fields whose length is off by at most 2, and
# loose bytes, which reaches every length check of PS3.7 D.3.3 with few examples.
length_prefixed = st.tuples(st.binary(max_size=8), st.integers(-2, 2)).map(
    lambda pair: max(0, len(pair[0]) + pair[1]).to_bytes(2, "big") + pair[0]
)
field_soup = st.lists(length_prefixed | st.binary(max_size=5), max_size=4).map(b"".join)
sub_items = framed(st.integers(0x51, 0x59) | byte, field_soup)
context_items = framed(
    st.sampled_from([0x20, 0x21]),
    st.tuples(
        st.binary(max_size=5),
        st.lists(framed(st.sampled_from([0x30, 0x40]) | byte, st.binary(max_size=6)), max_size=3),
    ).map(lambda pair: pair[0] + b"".join(pair[1])),
)
associate_items = st.lists(
    st.one_of(
        framed(st.just(0x10), st.binary(max_size=8)),
        context_items,
        framed(st.just(0x50), st.lists(sub_items, max_size=5).map(b"".join)),
        framed(byte, st.binary(max_size=4)),
    ),
    max_size=6,
).map(b"".join)


@PROPERTY
@given(
    pdu_type=st.sampled_from([1, 2]),
    fixed=st.binary(min_size=68, max_size=68),
    items=associate_items,
)
def test_structured_associate_bodies_raise_only_protocol_errors(
    codec: ModuleType, pdu_type: int, fixed: bytes, items: bytes
) -> None:
    try:
        value = codec.decode_pdu(pdu_type, fixed + items)
    except ProtocolError:
        return
    assert value == _pdu_py.decode_pdu(pdu_type, fixed + items)


@st.composite
def pdv_bodies(draw: st.DrawFn) -> list[bytes]:
    """Well-framed P-DATA bodies whose PDVs carry arbitrary control bytes and fragments."""
    command = CORPUS[-1][12:]
    bodies = []
    for _ in range(draw(st.integers(1, 6))):
        pdvs = []
        for _ in range(draw(st.integers(1, 4))):
            fragment = draw(
                st.sampled_from([command, command[:20], command[20:], b"", b"ab", b"abc"])
                | st.binary(max_size=30)
            )
            context_id = draw(st.sampled_from([1, 1, 1, 3]))
            control = draw(st.sampled_from([0, 1, 2, 3]) | byte)
            pdvs.append(
                (len(fragment) + 2).to_bytes(4, "big") + bytes((context_id, control)) + fragment
            )
        bodies.append(b"".join(pdvs))
    return bodies


@PROPERTY
@given(bodies=pdv_bodies(), restrict=st.booleans())
def test_assembler_raises_only_protocol_errors(
    codec: ModuleType, bodies: list[bytes], restrict: bool
) -> None:
    assembler = codec.Assembler(max_command_length=200)
    if restrict:
        assembler.context_ids = {1}
    try:
        for body in bodies:
            for context_id, command, dataset in assembler.feed(body):
                assert context_id in (1, 3)
                assert isinstance(command, dict) and 0x00000100 in command
                assert dataset is None or isinstance(dataset, bytearray)
    except ProtocolError:
        pass


@PROPERTY
@given(
    length=st.integers(0, 4096).map(lambda n: n * 2),
    piece=st.integers(1, 600).map(lambda n: n * 2),
    limit=st.integers(1, 9000),
    streamed=st.booleans(),
)
def test_dataset_limits_hold_for_any_fragmentation(
    codec: ModuleType, length: int, piece: int, limit: int, streamed: bool
) -> None:
    """Refused exactly when the dataset is longer than its limit, however it is cut."""
    command = _pdu_py.encode_command(
        {0x00000100: 0x0001, 0x00000110: 1, 0x00000800: 0, 0x00000002: "1.2.3"}
    )
    assembler = codec.Assembler()
    received: list[int] = []

    class Sink:
        def write(self, buffer: Any) -> None:
            received.append(len(buffer))

    if streamed:
        assembler.on_command = lambda context_id, fields: Sink()
        assembler.max_dataset_length = limit
    else:
        assembler.max_buffered_dataset_length = limit
    data = bytes(length)
    pieces = [data[i : i + piece] for i in range(0, length, piece)] or [b""]
    bodies = [_pdu_py.encode_pdu(PDataTF(((1, 3, command),)))[6:]]
    for i, fragment in enumerate(pieces):
        bodies.append(
            _pdu_py.encode_pdu(PDataTF(((1, 2 if i == len(pieces) - 1 else 0, fragment),)))[6:]
        )
    completed: list[Any] = []
    try:
        for body in bodies:
            completed.extend(assembler.feed(body))
    except ProtocolError as error:
        assert length > limit, error
        return
    assert length <= limit and len(completed) == 1
    assert (sum(received) if streamed else len(completed[0][2])) == length
