"""Cross-checks with pynetdicom 3.0, in both directions, in memory.

What pynetdicom encodes, both codecs decode to the same values; what the
codecs encode, pynetdicom decodes to the same values. pynetdicom is an
independent reading of PS3.8 and PS3.7, so agreement here is evidence that
neither side merely agrees with itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from types import ModuleType
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import dimse_primitives, dsutils
from pynetdicom import pdu as pn_pdu
from pynetdicom import pdu_primitives as pn
from pynetdicom.dimse_messages import C_FIND_RSP, C_STORE_RQ, N_ACTION_RQ, DIMSEMessage
from pynetdicom.presentation import PresentationContext

from dicomnet.core._command_tags import COMMAND_TAGS, TAG_BY_KEYWORD
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

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"

RQ = AssociateRQ(
    called_ae_title="ANY-SCP",
    calling_ae_title="STORESCU",
    presentation_contexts=(
        PresentationContextRQ(1, "1.2.840.10008.1.1", (IMPLICIT_LE,)),
        PresentationContextRQ(3, CT, (EXPLICIT_LE, IMPLICIT_LE)),
        PresentationContextRQ(5, MR, (IMPLICIT_LE,)),
    ),
    user_information=UserInformation(
        max_length=16384,
        implementation_class_uid="1.2.826.0.1.3680043.9.7433.1",
        implementation_version_name="DICOMNET_010",
        async_ops_window=AsyncOpsWindow(8, 1),
        role_selections=(RoleSelection(CT, True, True), RoleSelection(MR, False, True)),
        sop_class_extended=(
            SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.2.1.1", b"\x01\x01\x00"),
        ),
        sop_class_common_extended=(
            SOPClassCommonExtendedNegotiation(
                "1.2.840.10008.5.1.4.1.1.88.40",
                "1.2.840.10008.4.2",
                ("1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33"),
            ),
        ),
        user_identity=UserIdentityRQ(2, True, b"alice", b"s3cret"),
    ),
)

AC = AssociateAC(
    called_ae_title="ANY-SCP",
    calling_ae_title="STORESCU",
    presentation_contexts=(
        PresentationContextAC(1, 0, IMPLICIT_LE),
        PresentationContextAC(3, 0, EXPLICIT_LE),
        PresentationContextAC(5, 4, IMPLICIT_LE),
    ),
    user_information=UserInformation(
        max_length=0,
        implementation_class_uid="1.2.826.0.1.3680043.9.7433.1",
        implementation_version_name="DICOMNET_010",
        async_ops_window=AsyncOpsWindow(1, 1),
        role_selections=(RoleSelection(CT, False, True),),
        sop_class_extended=(SOPClassExtendedNegotiation("1.2.840.10008.5.1.4.1.2.1.1", b"\x01"),),
        user_identity_ac=UserIdentityAC(b"eyJhbGciOiJub25lIn0.e30."),
    ),
)


# -- our values <-> pynetdicom objects -----------------------------------------------------


def pn_user_information(info: UserInformation) -> list[Any]:
    """pynetdicom's user information primitives, in the order the codecs encode them."""
    items: list[Any] = []
    if info.max_length is not None:
        item = pn.MaximumLengthNotification()
        item.maximum_length_received = info.max_length
        items.append(item)
    if info.implementation_class_uid:
        item = pn.ImplementationClassUIDNotification()
        item.implementation_class_uid = info.implementation_class_uid
        items.append(item)
    if info.async_ops_window is not None:
        item = pn.AsynchronousOperationsWindowNegotiation()
        item.maximum_number_operations_invoked = info.async_ops_window.max_operations_invoked
        item.maximum_number_operations_performed = info.async_ops_window.max_operations_performed
        items.append(item)
    for role in info.role_selections:
        item = pn.SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = role.sop_class_uid
        item.scu_role = role.scu_role
        item.scp_role = role.scp_role
        items.append(item)
    if info.implementation_version_name is not None:
        item = pn.ImplementationVersionNameNotification()
        item.implementation_version_name = info.implementation_version_name
        items.append(item)
    for extended in info.sop_class_extended:
        item = pn.SOPClassExtendedNegotiation()
        item.sop_class_uid = extended.sop_class_uid
        item.service_class_application_information = extended.application_info
        items.append(item)
    for common in info.sop_class_common_extended:
        item = pn.SOPClassCommonExtendedNegotiation()
        item.sop_class_uid = common.sop_class_uid
        item.service_class_uid = common.service_class_uid
        item.related_general_sop_class_identification = list(common.related_general_sop_classes)
        items.append(item)
    if info.user_identity is not None:
        item = pn.UserIdentityNegotiation()
        item.user_identity_type = info.user_identity.identity_type
        item.positive_response_requested = info.user_identity.positive_response_requested
        item.primary_field = info.user_identity.primary_field
        item.secondary_field = info.user_identity.secondary_field
        items.append(item)
    if info.user_identity_ac is not None:
        item = pn.UserIdentityNegotiation()
        item.server_response = info.user_identity_ac.server_response
        items.append(item)
    return items


def pn_associate(value: AssociateRQ | AssociateAC) -> bytes:
    """``value`` encoded by pynetdicom, from its A-ASSOCIATE primitive."""
    primitive = pn.A_ASSOCIATE()
    primitive.application_context_name = value.application_context
    primitive.called_ae_title = value.called_ae_title
    primitive.calling_ae_title = value.calling_ae_title
    primitive.user_information = pn_user_information(value.user_information)
    contexts = []
    for pc in value.presentation_contexts:
        context = PresentationContext()
        context.context_id = pc.context_id
        if isinstance(pc, PresentationContextRQ):
            context.abstract_syntax = pc.abstract_syntax
            for syntax in pc.transfer_syntaxes:
                context.add_transfer_syntax(syntax)
        else:
            context.result = pc.result
            context.add_transfer_syntax(pc.transfer_syntax)
        contexts.append(context)
    if isinstance(value, AssociateRQ):
        primitive.presentation_context_definition_list = contexts
        return bytes(pn_pdu.A_ASSOCIATE_RQ(primitive).encode())
    primitive.result = 0
    primitive.presentation_context_definition_results_list = contexts
    return bytes(pn_pdu.A_ASSOCIATE_AC(primitive).encode())


def from_pn_user_information(item: Any) -> UserInformation:
    """Our value for a decoded pynetdicom User Information item."""
    fields: dict[str, Any] = {}
    roles, extended, common = [], [], []
    for sub in item.user_data:
        kind = type(sub).__name__
        if kind == "MaximumLengthSubItem":
            fields["max_length"] = sub.maximum_length_received
        elif kind == "ImplementationClassUIDSubItem":
            fields["implementation_class_uid"] = str(sub.implementation_class_uid)
        elif kind == "ImplementationVersionNameSubItem":
            fields["implementation_version_name"] = str(sub.implementation_version_name)
        elif kind == "AsynchronousOperationsWindowSubItem":
            fields["async_ops_window"] = AsyncOpsWindow(
                sub.maximum_number_operations_invoked, sub.maximum_number_operations_performed
            )
        elif kind == "SCP_SCU_RoleSelectionSubItem":
            roles.append(
                RoleSelection(str(sub.sop_class_uid), bool(sub.scu_role), bool(sub.scp_role))
            )
        elif kind == "SOPClassExtendedNegotiationSubItem":
            extended.append(
                SOPClassExtendedNegotiation(str(sub.sop_class_uid), bytes(sub.app_info))
            )
        elif kind == "SOPClassCommonExtendedNegotiationSubItem":
            related = tuple(str(uid) for uid in sub.related_general_sop_class_identification)
            common.append(
                SOPClassCommonExtendedNegotiation(
                    str(sub.sop_class_uid), str(sub.service_class_uid), related
                )
            )
        elif kind == "UserIdentitySubItemRQ":
            fields["user_identity"] = UserIdentityRQ(
                sub.user_identity_type,
                bool(sub.positive_response_requested),
                bytes(sub.primary_field),
                bytes(sub.secondary_field or b""),
            )
        elif kind == "UserIdentitySubItemAC":
            fields["user_identity_ac"] = UserIdentityAC(bytes(sub.server_response))
        else:
            raise AssertionError(f"unexpected sub-item {kind}")
    return UserInformation(
        **fields,
        role_selections=tuple(roles),
        sop_class_extended=tuple(extended),
        sop_class_common_extended=tuple(common),
    )


def from_pn_rq(encoded: bytes) -> AssociateRQ:
    pdu = pn_pdu.A_ASSOCIATE_RQ()
    pdu.decode(encoded)
    contexts = tuple(
        PresentationContextRQ(
            pc.context_id, str(pc.abstract_syntax), tuple(str(ts) for ts in pc.transfer_syntax)
        )
        for pc in pdu.presentation_context
    )
    return AssociateRQ(
        pdu.called_ae_title,
        pdu.calling_ae_title,
        contexts,
        from_pn_user_information(pdu.user_information),
        str(pdu.application_context_name),
        pdu.protocol_version,
    )


def from_pn_ac(encoded: bytes) -> AssociateAC:
    pdu = pn_pdu.A_ASSOCIATE_AC()
    pdu.decode(encoded)
    contexts = tuple(
        PresentationContextAC(pc.context_id, pc.result, str(pc.transfer_syntax or ""))
        for pc in pdu.presentation_context
    )
    return AssociateAC(
        pdu.called_ae_title,
        pdu.calling_ae_title,
        contexts,
        from_pn_user_information(pdu.user_information),
        str(pdu.application_context_name),
        pdu.protocol_version,
    )


def decode_whole(codec: ModuleType, encoded: bytes) -> object:
    """Frame one encoded PDU with the codec's reader and decode it."""
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(encoded)
    pdu_type, body = reader.next_pdu()
    assert reader.next_pdu() is None
    return codec.decode_pdu(pdu_type, body)


# -- A-ASSOCIATE -----------------------------------------------------------------------------


def test_pynetdicom_rq_decodes_to_the_same_values(codec: ModuleType) -> None:
    assert decode_whole(codec, pn_associate(RQ)) == RQ


def test_our_rq_decodes_in_pynetdicom_to_the_same_values(codec: ModuleType) -> None:
    assert from_pn_rq(codec.encode_pdu(RQ)) == RQ


def test_rq_bytes_are_identical(codec: ModuleType) -> None:
    assert codec.encode_pdu(RQ) == pn_associate(RQ)


def test_pynetdicom_ac_decodes_to_the_same_values(codec: ModuleType) -> None:
    assert decode_whole(codec, pn_associate(AC)) == AC


def test_our_ac_decodes_in_pynetdicom_to_the_same_values(codec: ModuleType) -> None:
    assert from_pn_ac(codec.encode_pdu(AC)) == AC


def test_ac_bytes_are_identical(codec: ModuleType) -> None:
    assert codec.encode_pdu(AC) == pn_associate(AC)


@pytest.mark.parametrize(
    ("result", "source", "reason"), [(1, 1, 1), (1, 1, 7), (2, 3, 2), (1, 2, 2)]
)
def test_associate_rj_both_ways(codec: ModuleType, result: int, source: int, reason: int) -> None:
    pdu = pn_pdu.A_ASSOCIATE_RJ()
    pdu.result, pdu.source, pdu.reason_diagnostic = result, source, reason
    assert decode_whole(codec, bytes(pdu.encode())) == AssociateRJ(result, source, reason)
    decoded = pn_pdu.A_ASSOCIATE_RJ()
    decoded.decode(codec.encode_pdu(AssociateRJ(result, source, reason)))
    assert (decoded.result, decoded.source, decoded.reason_diagnostic) == (result, source, reason)


# -- release, abort, P-DATA -----------------------------------------------------------------


def test_release_both_ways(codec: ModuleType) -> None:
    assert decode_whole(codec, bytes(pn_pdu.A_RELEASE_RQ().encode())) == ReleaseRQ()
    assert decode_whole(codec, bytes(pn_pdu.A_RELEASE_RP().encode())) == ReleaseRP()
    for ours, theirs in (
        (ReleaseRQ(), pn_pdu.A_RELEASE_RQ()),
        (ReleaseRP(), pn_pdu.A_RELEASE_RP()),
    ):
        theirs.decode(codec.encode_pdu(ours))
        assert theirs.encode() == codec.encode_pdu(ours)


@pytest.mark.parametrize(("source", "reason"), [(0, 0), (2, 0), (2, 1), (2, 2), (2, 6)])
def test_abort_both_ways(codec: ModuleType, source: int, reason: int) -> None:
    pdu = pn_pdu.A_ABORT_RQ()
    pdu.source, pdu.reason_diagnostic = source, reason
    assert decode_whole(codec, bytes(pdu.encode())) == Abort(source, reason)
    decoded = pn_pdu.A_ABORT_RQ()
    decoded.decode(codec.encode_pdu(Abort(source, reason)))
    assert (decoded.source, decoded.reason_diagnostic) == (source, reason)


def test_pdata_both_ways(codec: ModuleType) -> None:
    pdvs = ((1, 0x01, b"\x00\x00" * 10), (1, 0x03, b"cmd!"), (3, 0x02, bytes(range(256))))
    primitive = pn.P_DATA()
    primitive.presentation_data_value_list = [[c, bytes((h,)) + f] for c, h, f in pdvs]
    theirs = bytes(pn_pdu.P_DATA_TF(primitive).encode())
    assert decode_whole(codec, theirs) == PDataTF(pdvs)
    assert codec.encode_pdu(PDataTF(pdvs)) == theirs
    decoded = pn_pdu.P_DATA_TF()
    decoded.decode(codec.encode_pdu(PDataTF(pdvs)))
    items = decoded.presentation_data_value_items
    assert [(i.presentation_context_id, i.presentation_data_value) for i in items] == [
        (c, bytes((h,)) + f) for c, h, f in pdvs
    ]


# -- command sets ------------------------------------------------------------------------------


def keyword_fields(command: dict[int, object]) -> dict[str, object]:
    return {COMMAND_TAGS[tag][1]: value for tag, value in command.items()}


def pn_primitive(name: str) -> tuple[Any, type[DIMSEMessage], bytes]:
    """A pynetdicom DIMSE primitive with every field set, its message class and dataset."""
    dataset = b"\x08\x00\x16\x00\x1a\x00\x00\x00" + CT.encode() + b"\x00" + bytes(1000)
    if name == "C-STORE-RQ":
        primitive = dimse_primitives.C_STORE()
        primitive.MessageID = 7
        primitive.AffectedSOPClassUID = CT
        primitive.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.9.7433.3.1"
        primitive.Priority = 2
        primitive.MoveOriginatorApplicationEntityTitle = "MOVESCU"
        primitive.MoveOriginatorMessageID = 12
        primitive.DataSet = BytesIO(dataset)
        return primitive, C_STORE_RQ, dataset
    if name == "C-FIND-RSP":
        primitive = dimse_primitives.C_FIND()
        primitive.MessageIDBeingRespondedTo = 3
        primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.1.1"
        primitive.Status = 0xFF00
        primitive.Identifier = BytesIO(dataset)
        return primitive, C_FIND_RSP, dataset
    primitive = dimse_primitives.N_ACTION()
    primitive.MessageID = 9
    primitive.RequestedSOPClassUID = "1.2.840.10008.1.20.1"
    primitive.RequestedSOPInstanceUID = "1.2.840.10008.1.20.1.1"
    primitive.ActionTypeID = 1
    primitive.ActionInformation = BytesIO(dataset)
    return primitive, N_ACTION_RQ, dataset


def pn_message_stream(name: str, context_id: int, max_pdu_length: int) -> tuple[Any, bytes]:
    primitive, message_class, _ = pn_primitive(name)
    message = message_class()
    message.primitive_to_message(primitive)
    stream = b"".join(
        bytes(pn_pdu.P_DATA_TF(p).encode()) for p in message.encode_msg(context_id, max_pdu_length)
    )
    return message, stream


def frames(codec: ModuleType, stream: bytes) -> Iterator[tuple[int, memoryview]]:
    reader = codec.PDUReader(max_pdu_length=0)
    reader.feed(stream)
    for _ in range(100_000):
        item = reader.next_pdu()
        if item is None:
            return
        yield item
    raise AssertionError("unbounded stream")


MESSAGE_NAMES = ["C-STORE-RQ", "C-FIND-RSP", "N-ACTION-RQ"]


@pytest.mark.parametrize("name", MESSAGE_NAMES)
@pytest.mark.parametrize("max_pdu_length", [0, 64, 16384])
def test_pynetdicom_message_reassembles(codec: ModuleType, name: str, max_pdu_length: int) -> None:
    message, stream = pn_message_stream(name, 3, max_pdu_length)
    assembler = codec.Assembler()
    completed = []
    for pdu_type, body in frames(codec, stream):
        assert pdu_type == 0x04
        completed += assembler.feed(body)
    [(context_id, command, dataset)] = completed
    assert context_id == 3
    expected = {elem.keyword: elem.value for elem in message.command_set if elem.tag != 0}
    assert keyword_fields(command) == expected
    assert bytes(dataset) == pn_primitive(name)[2]


@pytest.mark.parametrize("name", MESSAGE_NAMES)
def test_our_message_decodes_in_pynetdicom(codec: ModuleType, name: str) -> None:
    reference, _ = pn_message_stream(name, 1, 0)
    fields = {elem.tag: elem.value for elem in reference.command_set if elem.tag != 0}
    dataset = pn_primitive(name)[2]
    stream = b"".join(
        bytes(b) for b in codec.fragment_message(5, codec.encode_command(fields), dataset, 256)
    )
    message = DIMSEMessage()
    done = False
    for pdu_type, body in frames(codec, stream):
        pdu = pn_pdu.P_DATA_TF()
        pdu.decode(bytes((pdu_type, 0)) + len(body).to_bytes(4, "big") + bytes(body))
        assert not done
        done = message.decode_msg(pdu.to_primitive())
    assert done
    assert message.context_id == 5
    assert type(message) is type(reference)
    assert message.command_set == reference.command_set
    assert message.data_set.getvalue() == dataset


def test_command_set_bytes_match_pydicom(codec: ModuleType) -> None:
    for name in MESSAGE_NAMES:
        reference, _ = pn_message_stream(name, 1, 0)
        fields = {elem.tag: elem.value for elem in reference.command_set}
        theirs = dsutils.encode(reference.command_set, True, True)
        assert codec.encode_command(fields) == theirs, name
        assert codec.decode_command(theirs) == {t: v for t, v in fields.items() if t}, name


def test_every_value_type_decodes_in_pydicom(codec: ModuleType) -> None:
    command = {
        TAG_BY_KEYWORD["AffectedSOPClassUID"]: CT,
        TAG_BY_KEYWORD["CommandField"]: 0x8001,
        TAG_BY_KEYWORD["MessageIDBeingRespondedTo"]: 65535,
        TAG_BY_KEYWORD["MoveDestination"]: "DEST",
        TAG_BY_KEYWORD["CommandDataSetType"]: 0x0101,
        TAG_BY_KEYWORD["Status"]: 0xA900,
        TAG_BY_KEYWORD["OffendingElement"]: (0x00080016, 0x00100020),
        TAG_BY_KEYWORD["ErrorComment"]: "odd",
        TAG_BY_KEYWORD["AffectedSOPInstanceUID"]: "1.2.3",
        TAG_BY_KEYWORD["CommandLengthToEnd"]: 0x01020304,
    }
    ds = dsutils.decode(BytesIO(codec.encode_command(command)), True, True)
    assert isinstance(ds, Dataset)
    assert ds.CommandGroupLength == len(codec.encode_command(command)) - 12
    assert ds.AffectedSOPClassUID == CT
    assert ds.MessageIDBeingRespondedTo == 65535
    assert ds.MoveDestination == "DEST"
    assert list(ds.OffendingElement) == [0x00080016, 0x00100020]
    assert ds.ErrorComment == "odd"
    assert ds.AffectedSOPInstanceUID == "1.2.3"
    assert ds.CommandLengthToEnd == 0x01020304
