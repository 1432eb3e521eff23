"""Association negotiation: PS3.8 9.3.2-9.3.4 and PS3.7 D.3.3, rule by rule.

Every rejection is checked with its literal (result, source, reason) of PS3.8
Table 9-21, every refused context with its literal result of Table 9-18, and
the role outcomes of PS3.7 D.3.3.4 as a grid in the standard's shape.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import pydicom.uid as pu
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom import sop_class

from dicomnet.core import codec as dicomnet_codec
from dicomnet.core.negotiation import (
    AcceptedContext,
    AcceptorPolicy,
    Negotiated,
    SupportedContext,
    UserIdentityDecision,
    accepted_by_acceptor,
    accepted_by_requestor,
    build_request,
    negotiate_as_acceptor,
    validate_ae_title,
)
from dicomnet.core.pdu import (
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomnet.core.uids import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    HTJ2K,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    MODALITY_WORKLIST_FIND,
    MPPS,
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    PATIENT_STUDY_ONLY_FIND,
    PATIENT_STUDY_ONLY_GET,
    PATIENT_STUDY_ONLY_MOVE,
    RLE_LOSSLESS,
    SOP_CLASSES,
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
    STORAGE_SOP_CLASSES,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
    is_valid_uid,
)


def pnd(keyword: str) -> str:
    """A UID from pynetdicom's table of SOP classes, by keyword."""
    return str(getattr(sop_class, keyword))


VERIFICATION = "1.2.840.10008.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BIG = "1.2.840.10008.1.2.2"
JPEG = "1.2.840.10008.1.2.4.50"
PRIVATE = "1.2.826.0.1.3680043.9.9999.1"


def rq(
    *contexts: tuple[int, str, tuple[str, ...]],
    called: str = "SCP",
    calling: str = "SCU",
    **info: Any,
) -> AssociateRQ:
    """An A-ASSOCIATE-RQ with the given contexts and user information sub-items."""
    return AssociateRQ(
        called_ae_title=called,
        calling_ae_title=calling,
        presentation_contexts=tuple(PresentationContextRQ(*c) for c in contexts),
        user_information=UserInformation(
            max_length=16384, implementation_class_uid="1.2.3.4", **info
        ),
    )


def policy(*supported: SupportedContext, **fields: Any) -> AcceptorPolicy:
    return AcceptorPolicy(ae_title="SCP", supported_contexts=supported, **fields)


def accept(request: AssociateRQ, pol: AcceptorPolicy) -> AssociateAC:
    answer = negotiate_as_acceptor(request, pol)
    assert isinstance(answer, AssociateAC), answer
    return answer


def results(ac: AssociateAC) -> list[tuple[int, int, str]]:
    return [(c.context_id, c.result, c.transfer_syntax) for c in ac.presentation_contexts]


def rj(answer: AssociateAC | AssociateRJ) -> tuple[int, int, int]:
    assert isinstance(answer, AssociateRJ), answer
    return (answer.result, answer.source, answer.reason)


ECHO = SupportedContext(VERIFICATION)
ONE_ECHO = (1, VERIFICATION, (IMPLICIT,))


# -- uids ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    ["0", "0.0", "1.2", "1.2.840.10008.1.2", "2.25.0", "1.20.300.4000", "1." + "9" * 62],
)
def test_valid_uids(value: str) -> None:
    assert is_valid_uid(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "1.",
        ".1",
        "1..2",
        "01.2",
        "1.02",
        "1.00",
        "1.2a",
        "1.2 ",
        " 1.2",
        "1.2\x00",
        "1,2",
        "1.2.-3",
        "1.+2",
        "\u0661.\u0662",  # Arabic-Indic digits are digits to str.isdigit, not to PS3.5
        "1." + "9" * 63,  # 65 characters
    ],
)
def test_invalid_uids(value: str) -> None:
    assert not is_valid_uid(value)


def test_is_valid_uid_refuses_non_strings() -> None:
    assert not is_valid_uid(b"1.2")  # type: ignore[arg-type]
    assert not is_valid_uid(None)  # type: ignore[arg-type]


WELL_KNOWN = [
    (IMPLICIT_VR_LITTLE_ENDIAN, pu.ImplicitVRLittleEndian),
    (EXPLICIT_VR_LITTLE_ENDIAN, pu.ExplicitVRLittleEndian),
    (EXPLICIT_VR_BIG_ENDIAN, pu.ExplicitVRBigEndian),
    (DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, pu.DeflatedExplicitVRLittleEndian),
    (JPEG_BASELINE, pu.JPEGBaseline8Bit),
    (JPEG_EXTENDED, pu.JPEGExtended12Bit),
    (JPEG_LOSSLESS_SV1, pu.JPEGLosslessSV1),
    (JPEG_LS_LOSSLESS, pu.JPEGLSLossless),
    (JPEG_LS_NEAR_LOSSLESS, pu.JPEGLSNearLossless),
    (JPEG_2000_LOSSLESS, pu.JPEG2000Lossless),
    (JPEG_2000, pu.JPEG2000),
    (RLE_LOSSLESS, pu.RLELossless),
    (HTJ2K_LOSSLESS, pu.HTJ2KLossless),
    (HTJ2K_LOSSLESS_RPCL, pu.HTJ2KLosslessRPCL),
    (HTJ2K, pu.HTJ2K),
    (VERIFICATION_SOP_CLASS, pnd("Verification")),
    (PATIENT_ROOT_FIND, pnd("PatientRootQueryRetrieveInformationModelFind")),
    (PATIENT_ROOT_MOVE, pnd("PatientRootQueryRetrieveInformationModelMove")),
    (PATIENT_ROOT_GET, pnd("PatientRootQueryRetrieveInformationModelGet")),
    (STUDY_ROOT_FIND, pnd("StudyRootQueryRetrieveInformationModelFind")),
    (STUDY_ROOT_MOVE, pnd("StudyRootQueryRetrieveInformationModelMove")),
    (STUDY_ROOT_GET, pnd("StudyRootQueryRetrieveInformationModelGet")),
    (PATIENT_STUDY_ONLY_FIND, pnd("PatientStudyOnlyQueryRetrieveInformationModelFind")),
    (PATIENT_STUDY_ONLY_MOVE, pnd("PatientStudyOnlyQueryRetrieveInformationModelMove")),
    (PATIENT_STUDY_ONLY_GET, pnd("PatientStudyOnlyQueryRetrieveInformationModelGet")),
    (MODALITY_WORKLIST_FIND, pnd("ModalityWorklistInformationFind")),
    (STORAGE_COMMITMENT_PUSH, pnd("StorageCommitmentPushModel")),
    (MPPS, pnd("ModalityPerformedProcedureStep")),
]


@pytest.mark.parametrize(("ours", "theirs"), WELL_KNOWN, ids=lambda v: str(v))
def test_well_known_uids_match_pydicom_and_pynetdicom(ours: str, theirs: str) -> None:
    assert ours == str(theirs)
    assert type(ours) is str and is_valid_uid(ours)


def test_storage_commitment_instance_and_transfer_syntax_sets() -> None:
    assert STORAGE_COMMITMENT_PUSH_INSTANCE == "1.2.840.10008.1.20.1.1"
    assert DEFAULT_TRANSFER_SYNTAXES == (EXPLICIT, IMPLICIT)
    assert set(UNCOMPRESSED_TRANSFER_SYNTAXES) == {
        EXPLICIT,
        IMPLICIT,
        BIG,
        "1.2.840.10008.1.2.1.99",
    }
    assert len(set(ALL_TRANSFER_SYNTAXES)) == len(ALL_TRANSFER_SYNTAXES) == 15
    assert all(is_valid_uid(uid) for uid in ALL_TRANSFER_SYNTAXES)
    # native first, lossless before lossy
    assert ALL_TRANSFER_SYNTAXES[:4] == UNCOMPRESSED_TRANSFER_SYNTAXES
    assert ALL_TRANSFER_SYNTAXES.index(JPEG_LOSSLESS_SV1) < ALL_TRANSFER_SYNTAXES.index(JPEG)


def test_storage_sop_classes() -> None:
    for uid in (CT, MR, DX_PRESENTATION, pnd("EnhancedSRStorage"), pnd("BasicTextSRStorage")):
        assert uid in STORAGE_SOP_CLASSES
    for uid in (
        VERIFICATION,
        STORAGE_COMMITMENT_PUSH,
        PATIENT_ROOT_FIND,
        MODALITY_WORKLIST_FIND,
        MPPS,
        "1.2.840.10008.1.3.10",  # Media Storage Directory Storage: media only
        IMPLICIT,
    ):
        assert uid not in STORAGE_SOP_CLASSES
    pynetdicom_storage = {str(uid) for uid in sop_class._STORAGE_CLASSES.values()}
    assert pynetdicom_storage & SOP_CLASSES.keys() <= STORAGE_SOP_CLASSES


def test_implementation_identity() -> None:
    assert is_valid_uid(IMPLEMENTATION_CLASS_UID)
    root, _, number = IMPLEMENTATION_CLASS_UID.partition("2.25.")
    assert root == "" and 0 < int(number) < 2**128
    assert IMPLEMENTATION_VERSION_NAME == "DICOMNET_010"


# -- AE titles and local values --------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A", "A"),
        ("STORESCP", "STORESCP"),
        ("X" * 16, "X" * 16),
        (" SCP  ", "SCP"),
        ("a-b_c.d", "a-b_c.d"),
    ],
)
def test_validate_ae_title_accepts(value: str, expected: str) -> None:
    assert validate_ae_title(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", " ", " " * 16, "X" * 17, "A\\B", "A\nB", "A\rB", "A\x00", "A\x1b", "A\x7f", "caf\xe9"],
)
def test_validate_ae_title_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        validate_ae_title(value)


def test_validate_ae_title_refuses_bytes() -> None:
    with pytest.raises(TypeError):
        validate_ae_title(b"SCP")  # type: ignore[arg-type]


def test_policy_and_supported_context_validate_local_values() -> None:
    with pytest.raises(ValueError):
        AcceptorPolicy(ae_title="")
    for count in (0, 129):
        with pytest.raises(ValueError):
            AcceptorPolicy(max_presentation_contexts=count)
    with pytest.raises(ValueError):
        AcceptorPolicy(max_pdu_length=-1)
    with pytest.raises(ValueError):
        AcceptorPolicy(max_operations_invoked=65536)
    with pytest.raises(ValueError):
        AcceptorPolicy(implementation_version_name="X" * 17)
    with pytest.raises(ValueError):
        SupportedContext("1.02")
    with pytest.raises(ValueError):
        SupportedContext(CT, ())
    with pytest.raises(ValueError):
        SupportedContext(CT, (EXPLICIT, "not a uid"))
    context = SupportedContext(pu.UID(CT), [pu.UID(EXPLICIT)])  # type: ignore[arg-type]
    assert context.transfer_syntaxes == (EXPLICIT,) and type(context.abstract_syntax) is str
    assert (context.scu_role, context.scp_role) == (True, False)
    pol = AcceptorPolicy(allowed_calling_ae_titles=frozenset({" MODALITY ", "PACS"}))
    assert pol.allowed_calling_ae_titles == frozenset({"MODALITY", "PACS"})


# -- whole-association rejections (PS3.8 9.3.4, Table 9-21) -------------------------------------
def test_application_context_not_dicom_is_1_1_2() -> None:
    request = dataclasses.replace(rq(ONE_ECHO), application_context="1.2.840.10008.3.1.1.2")
    assert rj(negotiate_as_acceptor(request, policy(ECHO))) == (1, 1, 2)


@pytest.mark.parametrize(("version", "accepted"), [(0, False), (2, False), (1, True), (3, True)])
def test_protocol_version_bit_0(version: int, accepted: bool) -> None:
    request = dataclasses.replace(rq(ONE_ECHO), protocol_version=version)
    answer = negotiate_as_acceptor(request, policy(ECHO))
    if accepted:
        assert isinstance(answer, AssociateAC)
    else:
        assert rj(answer) == (1, 2, 2)


@pytest.mark.parametrize(
    ("called", "required", "expected"),
    [
        ("OTHER", True, (1, 1, 7)),
        ("scp", True, (1, 1, 7)),  # AE titles are case sensitive
        ("OTHER", False, None),
        ("SCP", True, None),
        (" SCP ", True, None),  # leading and trailing spaces are not significant
    ],
)
def test_called_ae_title(
    called: str, required: bool, expected: tuple[int, int, int] | None
) -> None:
    answer = negotiate_as_acceptor(
        rq(ONE_ECHO, called=called), policy(ECHO, require_called_ae_title=required)
    )
    if expected is None:
        assert isinstance(answer, AssociateAC)
    else:
        assert rj(answer) == expected


@pytest.mark.parametrize(
    ("calling", "allowed", "expected"),
    [
        ("INTRUDER", frozenset({"MODALITY"}), (1, 1, 3)),
        ("MODALITY", frozenset({"MODALITY"}), None),
        ("  MODALITY ", frozenset({"MODALITY"}), None),
        ("MODALITY", frozenset({"MODALITY  "}), None),
        ("ANYONE", None, None),
        ("MODALITY", frozenset(), (1, 1, 3)),
    ],
)
def test_calling_ae_title_allow_list(
    calling: str, allowed: frozenset[str] | None, expected: tuple[int, int, int] | None
) -> None:
    answer = negotiate_as_acceptor(
        rq(ONE_ECHO, calling=calling), policy(ECHO, allowed_calling_ae_titles=allowed)
    )
    if expected is None:
        assert isinstance(answer, AssociateAC)
    else:
        assert rj(answer) == expected


def test_no_presentation_context_is_1_1_1() -> None:
    assert rj(negotiate_as_acceptor(rq(), policy(ECHO))) == (1, 1, 1)


def test_too_many_presentation_contexts_is_1_1_1() -> None:
    many = [(2 * i + 1, VERIFICATION, (IMPLICIT,)) for i in range(128)]
    assert isinstance(negotiate_as_acceptor(rq(*many), policy(ECHO)), AssociateAC)
    too_many = [*many, (1, VERIFICATION, (IMPLICIT,))]
    assert rj(negotiate_as_acceptor(rq(*too_many), policy(ECHO))) == (1, 1, 1)
    few = policy(ECHO, max_presentation_contexts=2)
    assert rj(negotiate_as_acceptor(rq(*many[:3]), few)) == (1, 1, 1)
    assert isinstance(negotiate_as_acceptor(rq(*many[:2]), few), AssociateAC)


def test_checks_run_in_the_documented_order() -> None:
    everything_wrong = dataclasses.replace(
        rq(called="OTHER", calling="INTRUDER"),
        application_context="1.2.3",
        protocol_version=0,
    )
    strict = policy(
        ECHO, require_called_ae_title=True, allowed_calling_ae_titles=frozenset({"MODALITY"})
    )
    assert rj(negotiate_as_acceptor(everything_wrong, strict)) == (1, 1, 2)
    request = dataclasses.replace(everything_wrong, application_context="1.2.840.10008.3.1.1.1")
    assert rj(negotiate_as_acceptor(request, strict)) == (1, 2, 2)
    request = dataclasses.replace(request, protocol_version=1)
    assert rj(negotiate_as_acceptor(request, strict)) == (1, 1, 7)
    request = dataclasses.replace(request, called_ae_title="SCP")
    assert rj(negotiate_as_acceptor(request, strict)) == (1, 1, 3)
    request = dataclasses.replace(request, calling_ae_title="MODALITY")
    assert rj(negotiate_as_acceptor(request, strict)) == (1, 1, 1)  # no context


def test_association_request_hook_is_called_first() -> None:
    seen: list[AssociateRQ] = []
    busy = AssociateRJ(2, 3, 2)

    def reject(request: AssociateRQ) -> AssociateRJ | None:
        seen.append(request)
        return busy

    request = dataclasses.replace(rq(ONE_ECHO), application_context="1.2.3")
    assert negotiate_as_acceptor(request, policy(ECHO, association_request=reject)) is busy
    assert seen == [request]

    def let_through(request: AssociateRQ) -> AssociateRJ | None:
        seen.append(request)
        return None

    answer = negotiate_as_acceptor(rq(ONE_ECHO), policy(ECHO, association_request=let_through))
    assert results(accept_ac(answer)) == [(1, 0, IMPLICIT)]
    assert len(seen) == 2


def accept_ac(answer: AssociateAC | AssociateRJ) -> AssociateAC:
    assert isinstance(answer, AssociateAC), answer
    return answer


# -- presentation contexts (PS3.8 9.3.3.2, Table 9-18) ------------------------------------------
def test_context_results_each_with_its_reason() -> None:
    request = rq(
        (1, VERIFICATION, (IMPLICIT,)),
        (3, CT, (EXPLICIT,)),  # not supported: 3
        (5, VERIFICATION, (JPEG,)),  # nothing in common: 4
        (7, "1.2.840.10008.1.1\x00\x00", (IMPLICIT,)),  # padded beyond one NUL: 3
        (9, "1.02.3", (IMPLICIT,)),  # leading zero: not a UID: 3
        (11, "", (IMPLICIT,)),  # 3
        (13, VERIFICATION, ("1.2.840.10008.1.2 ", "x", EXPLICIT)),  # bad UIDs ignored
    )
    assert results(accept(request, policy(ECHO))) == [
        (1, 0, IMPLICIT),
        (3, 3, ""),
        (5, 4, ""),
        (7, 3, ""),
        (9, 3, ""),
        (11, 3, ""),
        (13, 0, EXPLICIT),
    ]


def test_malformed_context_ids_are_refused_with_2_and_still_listed() -> None:
    request = rq(
        (0, VERIFICATION, (IMPLICIT,)),
        (2, VERIFICATION, (IMPLICIT,)),
        (3, VERIFICATION, (IMPLICIT,)),
        (5, VERIFICATION, (IMPLICIT,)),
        (5, VERIFICATION, (EXPLICIT,)),  # duplicate: both refused
        (254, VERIFICATION, (IMPLICIT,)),
        (255, VERIFICATION, (IMPLICIT,)),
    )
    assert results(accept(request, policy(ECHO))) == [
        (0, 2, ""),
        (2, 2, ""),
        (3, 0, IMPLICIT),
        (5, 2, ""),
        (5, 2, ""),
        (254, 2, ""),
        (255, 0, IMPLICIT),
    ]


def test_ids_no_byte_can_hold_are_left_out() -> None:
    request = rq((1, VERIFICATION, (IMPLICIT,)), (257, VERIFICATION, (IMPLICIT,)))
    assert results(accept(request, policy(ECHO))) == [(1, 0, IMPLICIT)]


@pytest.mark.parametrize(
    ("ours", "proposed", "chosen"),
    [
        ((EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), EXPLICIT),
        ((IMPLICIT, EXPLICIT), (EXPLICIT, IMPLICIT), IMPLICIT),
        ((JPEG, EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT, JPEG), JPEG),
        ((BIG, EXPLICIT), (IMPLICIT, EXPLICIT), EXPLICIT),
        ((EXPLICIT,), (IMPLICIT, EXPLICIT, EXPLICIT), EXPLICIT),
    ],
)
def test_transfer_syntax_chosen_in_our_preference_order(
    ours: tuple[str, ...], proposed: tuple[str, ...], chosen: str
) -> None:
    answer = accept(rq((1, CT, proposed)), policy(SupportedContext(CT, ours)))
    assert results(answer) == [(1, 0, chosen)]


def test_first_supported_entry_for_a_uid_counts() -> None:
    pol = policy(SupportedContext(CT, (IMPLICIT,)), SupportedContext(CT, (EXPLICIT,)))
    assert results(accept(rq((1, CT, (EXPLICIT,))), pol)) == [(1, 4, "")]


def test_nothing_accepted_is_still_an_ac() -> None:
    request = rq((1, CT, (EXPLICIT,)), (3, MR, (EXPLICIT,)), (4, VERIFICATION, (IMPLICIT,)))
    answer = accept(request, policy(ECHO))
    assert results(answer) == [(1, 3, ""), (3, 3, ""), (4, 2, "")]
    assert accepted_by_requestor(request, answer).contexts == {}
    assert accepted_by_acceptor(request, answer).contexts == {}


def test_accept_any_storage() -> None:
    request = rq(
        (1, CT, (JPEG, EXPLICIT)),  # ours: native first, whatever the requestor's order
        (3, DX_PRESENTATION, (JPEG,)),
        (5, PRIVATE, (IMPLICIT,)),  # unknown to the standard: private storage
        (7, PATIENT_ROOT_FIND, (IMPLICIT,)),  # a named non-storage class: 3
        (9, IMPLICIT, (IMPLICIT,)),  # a transfer syntax is no abstract syntax: 3
        (11, MR, ("1.2.3.4",)),  # no transfer syntax in common: 4
        (13, VERIFICATION, (IMPLICIT,)),  # not supported here: 3
        (15, "1.2.3.04", (IMPLICIT,)),  # not a UID: 3
        (17, "1.2.840.10008.1.3.10", (IMPLICIT,)),  # DICOMDIR: 3
    )
    answer = accept(request, policy(accept_any_storage=True))
    assert results(answer) == [
        (1, 0, EXPLICIT),
        (3, 0, JPEG),
        (5, 0, IMPLICIT),
        (7, 3, ""),
        (9, 3, ""),
        (11, 4, ""),
        (13, 3, ""),
        (15, 3, ""),
        (17, 3, ""),
    ]


def test_accept_any_storage_uses_our_storage_syntaxes_and_supported_entries_first() -> None:
    pol = policy(
        SupportedContext(CT, (IMPLICIT,)),
        accept_any_storage=True,
        storage_transfer_syntaxes=(IMPLICIT, EXPLICIT),
    )
    request = rq((1, CT, (EXPLICIT,)), (3, MR, (JPEG, EXPLICIT, IMPLICIT)))
    assert results(accept(request, pol)) == [(1, 4, ""), (3, 0, IMPLICIT)]


def test_accept_any_storage_requestor_is_scu_only() -> None:
    request = rq(
        (1, CT, (EXPLICIT,)),
        (3, MR, (EXPLICIT,)),
        role_selections=(RoleSelection(CT, True, True), RoleSelection(MR, False, True)),
    )
    answer = accept(request, policy(accept_any_storage=True))
    assert results(answer) == [(1, 0, EXPLICIT), (3, 1, "")]
    assert answer.user_information.role_selections == (RoleSelection(CT, True, False),)


def test_ac_carries_our_user_information_and_echoes_titles() -> None:
    pol = policy(
        ECHO,
        max_pdu_length=0,
        implementation_class_uid="1.2.826.0.1.3680043.2.1",
        implementation_version_name="MYSCP_1",
    )
    answer = accept(rq(ONE_ECHO, called="SCP", calling="  MODALITY"), pol)
    assert (answer.called_ae_title, answer.calling_ae_title) == ("SCP", "  MODALITY")
    info = answer.user_information
    assert info.max_length == 0
    assert info.implementation_class_uid == "1.2.826.0.1.3680043.2.1"
    assert info.implementation_version_name == "MYSCP_1"
    assert info.async_ops_window is None
    assert info.role_selections == ()
    assert info.sop_class_extended == ()
    assert info.user_identity_ac is None
    default = accept(rq(ONE_ECHO), policy(ECHO)).user_information
    assert default.max_length == 262_144
    assert default.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert default.implementation_version_name == "DICOMNET_010"


# -- roles (PS3.7 D.3.3.4) ---------------------------------------------------------------------
# proposed (SCU, SCP) | allowed (SCU, SCP) | context result | AC role item | requestor's (SCU, SCP)
ROLE_GRID = """
proposed  allowed   result  answered  requestor
1 0       1 0       0       1 0       1 0
1 0       0 1       1       -         -
1 0       1 1       0       1 0       1 0
1 0       0 0       1       -         -
0 1       1 0       1       -         -
0 1       0 1       0       0 1       0 1
0 1       1 1       0       0 1       0 1
0 1       0 0       1       -         -
1 1       1 0       0       1 0       1 0
1 1       0 1       0       0 1       0 1
1 1       1 1       0       1 1       1 1
1 1       0 0       1       -         -
0 0       1 0       1       -         -
0 0       0 1       1       -         -
0 0       1 1       1       -         -
0 0       0 0       1       -         -
"""


def role_rows() -> list[tuple[tuple[bool, bool], tuple[bool, bool], int, Any, Any]]:
    rows = []
    for line in ROLE_GRID.strip().splitlines()[1:]:
        cells = [cell == "1" for cell in line.split()]
        result = int(line.split()[4])
        if "-" in line:
            answered = requestor = None
        else:
            answered, requestor = (cells[5], cells[6]), (cells[7], cells[8])
        rows.append(((cells[0], cells[1]), (cells[2], cells[3]), result, answered, requestor))
    return rows


@pytest.mark.parametrize(("proposed", "allowed", "result", "answered", "requestor"), role_rows())
def test_role_selection_outcomes(
    proposed: tuple[bool, bool],
    allowed: tuple[bool, bool],
    result: int,
    answered: tuple[bool, bool] | None,
    requestor: tuple[bool, bool] | None,
) -> None:
    request = rq((1, CT, (EXPLICIT,)), role_selections=(RoleSelection(CT, *proposed),))
    answer = accept(request, policy(SupportedContext(CT, (EXPLICIT,), *allowed)))
    assert [c.result for c in answer.presentation_contexts] == [result]
    expected_items = () if answered is None else (RoleSelection(CT, *answered),)
    assert answer.user_information.role_selections == expected_items
    ours = accepted_by_requestor(request, answer).contexts
    theirs = accepted_by_acceptor(request, answer).contexts
    if requestor is None:
        assert ours == {} and theirs == {}
    else:
        assert (ours[1].scu_role, ours[1].scp_role) == requestor
        assert (theirs[1].scu_role, theirs[1].scp_role) == requestor[::-1]


def test_role_grid_has_every_combination() -> None:
    assert len({(p, a) for p, a, *_ in role_rows()}) == 16


@pytest.mark.parametrize(
    ("allowed", "result", "requestor"),
    [((True, False), 0, (True, False)), ((True, True), 0, (True, False)), ((False, True), 1, None)],
)
def test_default_roles_without_role_selection(
    allowed: tuple[bool, bool], result: int, requestor: tuple[bool, bool] | None
) -> None:
    request = rq((1, CT, (EXPLICIT,)))
    answer = accept(request, policy(SupportedContext(CT, (EXPLICIT,), *allowed)))
    assert [c.result for c in answer.presentation_contexts] == [result]
    assert answer.user_information.role_selections == ()  # none proposed, none answered
    contexts = accepted_by_requestor(request, answer).contexts
    if requestor is None:
        assert contexts == {}
    else:
        assert (contexts[1].scu_role, contexts[1].scp_role) == requestor


def test_roles_answered_only_for_accepted_classes_first_item_counts() -> None:
    pol = policy(SupportedContext(CT, (EXPLICIT,), True, True), ECHO)
    request = rq(
        (1, CT, (EXPLICIT,)),
        (3, CT, (IMPLICIT, EXPLICIT)),
        (5, MR, (EXPLICIT,)),  # refused: no answer for MR
        (7, VERIFICATION, (IMPLICIT,)),
        role_selections=(
            RoleSelection(CT, False, True),
            RoleSelection(CT, True, True),  # a second item for CT: ignored
            RoleSelection(MR, False, True),
            RoleSelection(PRIVATE, False, True),  # never proposed as a context
        ),
    )
    answer = accept(request, pol)
    assert answer.user_information.role_selections == (RoleSelection(CT, False, True),)
    ours = accepted_by_requestor(request, answer)
    assert {cid: (c.scu_role, c.scp_role) for cid, c in ours.contexts.items()} == {
        1: (False, True),
        3: (False, True),
        7: (True, False),
    }


@pytest.mark.parametrize(
    ("proposed", "answered", "requestor"),
    [
        ((True, False), (True, True), (True, False)),  # a role not proposed is ignored
        ((False, True), (True, True), (False, True)),
        ((False, True), None, (True, False)),  # no answer: the default roles
        ((True, True), (False, False), None),  # no role left: unusable
    ],
)
def test_requestor_reads_role_answers(
    proposed: tuple[bool, bool],
    answered: tuple[bool, bool] | None,
    requestor: tuple[bool, bool] | None,
) -> None:
    request = rq((1, CT, (EXPLICIT,)), role_selections=(RoleSelection(CT, *proposed),))
    roles = () if answered is None else (RoleSelection(CT, *answered),)
    answer = AssociateAC(
        "SCP",
        "SCU",
        (PresentationContextAC(1, 0, EXPLICIT),),
        UserInformation(max_length=0, implementation_class_uid="1.2", role_selections=roles),
    )
    contexts = accepted_by_requestor(request, answer).contexts
    if requestor is None:
        assert contexts == {}
    else:
        assert (contexts[1].scu_role, contexts[1].scp_role) == requestor


# -- asynchronous operations window (PS3.7 D.3.3.3) ---------------------------------------------
@pytest.mark.parametrize(
    ("proposed", "ours", "answered", "requestor", "acceptor"),
    [
        # proposed (invoked, performed); our (performed, invoked); the AC's (invoked, performed);
        # each side's (max_operations_invoked, max_operations_performed)
        (None, (16, 16), None, (1, 1), (1, 1)),
        ((8, 1), (4, 16), (4, 1), (4, 1), (1, 4)),
        ((1, 8), (16, 2), (1, 2), (1, 2), (2, 1)),
        ((0, 0), (16, 16), (16, 16), (16, 16), (16, 16)),
        ((0, 0), (0, 0), (0, 0), (0, 0), (0, 0)),
        ((5, 3), (0, 0), (5, 3), (5, 3), (3, 5)),
        ((0, 7), (3, 0), (3, 7), (3, 7), (7, 3)),
        ((1, 1), (16, 16), (1, 1), (1, 1), (1, 1)),
    ],
)
def test_async_operations_window(
    proposed: tuple[int, int] | None,
    ours: tuple[int, int],
    answered: tuple[int, int] | None,
    requestor: tuple[int, int],
    acceptor: tuple[int, int],
) -> None:
    window = AsyncOpsWindow(*proposed) if proposed else None
    request = rq(ONE_ECHO, async_ops_window=window)
    pol = policy(ECHO, max_operations_performed=ours[0], max_operations_invoked=ours[1])
    answer = accept(request, pol)
    expected = AsyncOpsWindow(*answered) if answered else None
    assert answer.user_information.async_ops_window == expected
    req = accepted_by_requestor(request, answer)
    acc = accepted_by_acceptor(request, answer)
    assert (req.max_operations_invoked, req.max_operations_performed) == requestor
    assert (acc.max_operations_invoked, acc.max_operations_performed) == acceptor


@pytest.mark.parametrize(
    ("proposed", "answered", "requestor"),
    [
        ((2, 3), (0, 0), (2, 3)),  # more than proposed: cut to the proposal
        ((2, 3), (9, 1), (2, 1)),
        ((2, 3), None, (1, 1)),  # not answered: the default
        (None, (9, 9), (1, 1)),  # answered unasked: ignored
    ],
)
def test_requestor_clamps_the_answered_window(
    proposed: tuple[int, int] | None,
    answered: tuple[int, int] | None,
    requestor: tuple[int, int],
) -> None:
    request = rq(ONE_ECHO, async_ops_window=AsyncOpsWindow(*proposed) if proposed else None)
    answer = AssociateAC(
        "SCP",
        "SCU",
        (PresentationContextAC(1, 0, IMPLICIT),),
        UserInformation(
            max_length=0,
            implementation_class_uid="1.2",
            async_ops_window=AsyncOpsWindow(*answered) if answered else None,
        ),
    )
    negotiated = accepted_by_requestor(request, answer)
    assert (negotiated.max_operations_invoked, negotiated.max_operations_performed) == requestor


# -- user identity (PS3.7 D.3.3.7) ------------------------------------------------------------
IDENTITIES = [
    UserIdentityRQ(1, True, b"alice"),
    UserIdentityRQ(2, True, b"alice", b"s3cret"),
    UserIdentityRQ(3, True, b"kerberos-ticket"),
    UserIdentityRQ(4, True, b"<saml:Assertion/>"),
    UserIdentityRQ(5, True, b"eyJhbGciOiJub25lIn0.e30."),
]
EXPECTED_RESPONSE = {1: b"", 2: b"", 3: b"server-ticket", 4: b"server-ticket", 5: b"server-ticket"}


@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda i: f"type{i.identity_type}")
@pytest.mark.parametrize("positive", [True, False])
def test_user_identity_accepted(identity: UserIdentityRQ, positive: bool) -> None:
    identity = dataclasses.replace(identity, positive_response_requested=positive)
    calls: list[tuple[UserIdentityRQ, AssociateRQ]] = []

    def hook(presented: UserIdentityRQ, request: AssociateRQ) -> UserIdentityDecision:
        calls.append((presented, request))
        return UserIdentityDecision(True, b"server-ticket")

    request = rq(ONE_ECHO, user_identity=identity)
    answer = accept(request, policy(ECHO, user_identity=hook))
    assert calls == [(identity, request)]
    expected = EXPECTED_RESPONSE[identity.identity_type] if positive else None
    ac_item = answer.user_information.user_identity_ac
    assert ac_item == (None if expected is None else UserIdentityAC(expected))
    for negotiated in (
        accepted_by_requestor(request, answer),
        accepted_by_acceptor(request, answer),
    ):
        assert negotiated.user_identity == identity
        assert negotiated.user_identity_response == expected


@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda i: f"type{i.identity_type}")
def test_user_identity_rejected_is_1_1_1(identity: UserIdentityRQ) -> None:
    pol = policy(ECHO, user_identity=lambda presented, request: UserIdentityDecision(False))
    assert rj(negotiate_as_acceptor(rq(ONE_ECHO, user_identity=identity), pol)) == (1, 1, 1)


@pytest.mark.parametrize("identity", IDENTITIES, ids=lambda i: f"type{i.identity_type}")
def test_user_identity_without_hook_is_accepted_without_response(identity: UserIdentityRQ) -> None:
    request = rq(ONE_ECHO, user_identity=identity)
    answer = accept(request, policy(ECHO))
    assert answer.user_information.user_identity_ac is None
    assert accepted_by_requestor(request, answer).user_identity_response is None


def test_user_identity_response_none_from_hook_is_empty() -> None:
    pol = policy(ECHO, user_identity=lambda presented, request: UserIdentityDecision(True))
    answer = accept(rq(ONE_ECHO, user_identity=IDENTITIES[4]), pol)
    assert answer.user_information.user_identity_ac == UserIdentityAC(b"")


def test_user_identity_hook_not_called_when_rejected_earlier() -> None:
    calls: list[UserIdentityRQ] = []

    def hook(presented: UserIdentityRQ, request: AssociateRQ) -> UserIdentityDecision:
        calls.append(presented)
        return UserIdentityDecision(True)

    pol = policy(ECHO, allowed_calling_ae_titles=frozenset({"MODALITY"}), user_identity=hook)
    assert rj(negotiate_as_acceptor(rq(ONE_ECHO, user_identity=IDENTITIES[0]), pol)) == (1, 1, 3)
    assert calls == []


# -- extended and common extended negotiation (PS3.7 D.3.3.5, D.3.3.6) ---------------------------
def test_extended_negotiation_hooks_only_for_accepted_classes() -> None:
    extended_calls: list[SOPClassExtendedNegotiation] = []
    common_calls: list[SOPClassCommonExtendedNegotiation] = []

    def extended(item: SOPClassExtendedNegotiation) -> bytes | None:
        extended_calls.append(item)
        return None if item.sop_class_uid == VERIFICATION else b"\x01" + item.application_info

    def common(item: SOPClassCommonExtendedNegotiation) -> bool:
        common_calls.append(item)
        return True

    storage_class = "1.2.840.10008.4.2"
    request = rq(
        (1, CT, (EXPLICIT,)),
        (3, MR, (EXPLICIT,)),  # refused: no hook for MR
        (5, VERIFICATION, (IMPLICIT,)),
        sop_class_extended=(
            SOPClassExtendedNegotiation(CT, b"\x02"),
            SOPClassExtendedNegotiation(CT, b"\x03"),  # second item for CT: ignored
            SOPClassExtendedNegotiation(MR, b"\x02"),
            SOPClassExtendedNegotiation(PRIVATE, b"\x02"),
            SOPClassExtendedNegotiation(VERIFICATION, b"\x02"),
        ),
        sop_class_common_extended=(
            SOPClassCommonExtendedNegotiation(CT, storage_class),
            SOPClassCommonExtendedNegotiation(MR, storage_class),
        ),
    )
    pol = policy(
        SupportedContext(CT, (EXPLICIT,)),
        ECHO,
        sop_class_extended=extended,
        sop_class_common_extended=common,
    )
    answer = accept(request, pol)
    assert [item.sop_class_uid for item in extended_calls] == [CT, VERIFICATION]
    assert extended_calls[0].application_info == b"\x02"
    assert [item.sop_class_uid for item in common_calls] == [CT]
    assert answer.user_information.sop_class_extended == (
        SOPClassExtendedNegotiation(CT, b"\x01\x02"),
    )
    assert answer.user_information.sop_class_common_extended == ()
    for negotiated in (
        accepted_by_requestor(request, answer),
        accepted_by_acceptor(request, answer),
    ):
        assert negotiated.sop_class_extended == {CT: b"\x01\x02"}
        assert negotiated.sop_class_common_extended == {
            CT: SOPClassCommonExtendedNegotiation(CT, storage_class)
        }


def test_common_extended_hook_declining_refuses_the_class() -> None:
    extended_calls: list[str] = []

    def extended(item: SOPClassExtendedNegotiation) -> bytes:
        extended_calls.append(item.sop_class_uid)
        return b""

    request = rq(
        (1, CT, (EXPLICIT,)),
        (3, CT, (IMPLICIT,)),
        (5, VERIFICATION, (IMPLICIT,)),
        role_selections=(RoleSelection(CT, True, False),),
        sop_class_extended=(SOPClassExtendedNegotiation(CT, b"\x01"),),
        sop_class_common_extended=(
            SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2", (PRIVATE,)),
        ),
    )
    pol = policy(
        SupportedContext(CT, DEFAULT_TRANSFER_SYNTAXES),
        ECHO,
        sop_class_common_extended=lambda item: False,
        sop_class_extended=extended,
    )
    answer = accept(request, pol)
    assert results(answer) == [(1, 1, ""), (3, 1, ""), (5, 0, IMPLICIT)]
    assert answer.user_information.role_selections == ()
    assert answer.user_information.sop_class_extended == ()
    assert extended_calls == []
    assert list(accepted_by_acceptor(request, answer).contexts) == [5]


# -- the agreement from both sides ------------------------------------------------------------
def full_exchange() -> tuple[AssociateRQ, AssociateAC]:
    request = build_request(
        "SCP",
        "SCU",
        [
            (CT, (JPEG, EXPLICIT)),
            (CT, (JPEG,)),
            (MR, (IMPLICIT,)),
            (VERIFICATION, DEFAULT_TRANSFER_SYNTAXES),
        ],
        max_pdu_length=32768,
        async_ops=AsyncOpsWindow(4, 2),
        roles=(RoleSelection(MR, True, True),),
        user_identity=UserIdentityRQ(2, True, b"alice", b"pw"),
    )
    pol = policy(
        SupportedContext(CT, (JPEG, EXPLICIT)),
        SupportedContext(MR, (IMPLICIT,), True, True),
        ECHO,
        max_pdu_length=65536,
        max_operations_performed=3,
        max_operations_invoked=1,
        user_identity=lambda presented, request: UserIdentityDecision(True),
    )
    return request, accept(request, pol)


def test_both_sides_agree_mirrored() -> None:
    request, answer = full_exchange()
    req = accepted_by_requestor(request, answer)
    acc = accepted_by_acceptor(request, answer)
    assert req.contexts == {
        1: AcceptedContext(1, CT, JPEG, True, False),
        3: AcceptedContext(3, CT, JPEG, True, False),
        5: AcceptedContext(5, MR, IMPLICIT, True, True),
        7: AcceptedContext(7, VERIFICATION, EXPLICIT, True, False),
    }
    assert acc.contexts == {
        1: AcceptedContext(1, CT, JPEG, False, True),
        3: AcceptedContext(3, CT, JPEG, False, True),
        5: AcceptedContext(5, MR, IMPLICIT, True, True),
        7: AcceptedContext(7, VERIFICATION, EXPLICIT, False, True),
    }
    assert (req.our_max_pdu_length, req.peer_max_pdu_length) == (32768, 65536)
    assert (acc.our_max_pdu_length, acc.peer_max_pdu_length) == (65536, 32768)
    assert (req.max_operations_invoked, req.max_operations_performed) == (3, 1)
    assert (acc.max_operations_invoked, acc.max_operations_performed) == (1, 3)
    assert req.peer_implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert acc.peer_implementation_version_name == "DICOMNET_010"
    assert req.user_identity_response == b"" == acc.user_identity_response
    assert (req.called_ae_title, req.calling_ae_title) == ("SCP", "SCU")
    assert (acc.called_ae_title, acc.calling_ae_title) == ("SCP", "SCU")


def test_exchange_survives_both_codecs(codec: ModuleType) -> None:
    request, answer = full_exchange()
    decoded_rq = codec.decode_pdu(1, codec.encode_pdu(request)[6:])
    decoded_ac = codec.decode_pdu(2, codec.encode_pdu(answer)[6:])
    assert accepted_by_requestor(decoded_rq, decoded_ac) == accepted_by_requestor(request, answer)


def test_context_for_prefers_the_transfer_syntax_and_filters_roles() -> None:
    negotiated = Negotiated(
        contexts={
            1: AcceptedContext(1, CT, EXPLICIT),
            3: AcceptedContext(3, CT, JPEG),
            5: AcceptedContext(5, MR, IMPLICIT, False, True),
            7: AcceptedContext(7, MR, EXPLICIT, True, False),
        },
        peer_max_pdu_length=0,
        our_max_pdu_length=0,
    )
    assert negotiated.context_for(CT) == AcceptedContext(1, CT, EXPLICIT)
    assert negotiated.context_for(CT, JPEG) == AcceptedContext(3, CT, JPEG)
    assert negotiated.context_for(CT, BIG) == AcceptedContext(1, CT, EXPLICIT)  # fallback
    assert negotiated.context_for(VERIFICATION) is None
    assert negotiated.context_for(MR, IMPLICIT, role="scu") == negotiated.contexts[7]
    assert negotiated.context_for(MR, role="scp") == negotiated.contexts[5]
    assert negotiated.context_for(CT, role="scp") is None
    assert [c.context_id for c in negotiated.contexts_for(CT)] == [1, 3]
    assert [c.context_id for c in negotiated.contexts_for(MR, role="scu")] == [7]
    with pytest.raises(ValueError):
        negotiated.context_for(CT, role="both")  # type: ignore[arg-type]


# -- the requestor facing a hostile AC ---------------------------------------------------------
def test_requestor_treats_inconsistent_answers_as_refused() -> None:
    request = build_request(
        "SCP",
        "SCU",
        [(CT, (EXPLICIT,)), (MR, (IMPLICIT,)), (VERIFICATION, (IMPLICIT,)), (PRIVATE, (EXPLICIT,))],
        async_ops=AsyncOpsWindow(2, 2),
    )
    answer = AssociateAC(
        called_ae_title="SCP",
        calling_ae_title="SCU",
        presentation_contexts=(
            PresentationContextAC(1, 0, IMPLICIT),  # proposed for context 3, not 1
            PresentationContextAC(3, 0, ""),  # accepted without a transfer syntax
            PresentationContextAC(5, 0, IMPLICIT),
            PresentationContextAC(5, 0, IMPLICIT),  # answered twice
            PresentationContextAC(7, 9, EXPLICIT),  # an unknown result
            PresentationContextAC(9, 0, IMPLICIT),  # never proposed
            PresentationContextAC(2, 0, IMPLICIT),  # even, never proposed
        ),
        user_information=UserInformation(
            max_length=3,
            implementation_class_uid="1.2.3",
            async_ops_window=AsyncOpsWindow(0, 500),
            role_selections=(RoleSelection(CT, True, True),),
            sop_class_extended=(SOPClassExtendedNegotiation(CT, b"\xff"),),
            user_identity_ac=UserIdentityAC(b"unasked"),
        ),
    )
    negotiated = accepted_by_requestor(request, answer)
    assert negotiated.contexts == {}
    assert negotiated.peer_max_pdu_length == 8
    assert (negotiated.max_operations_invoked, negotiated.max_operations_performed) == (2, 2)
    assert negotiated.sop_class_extended == {}
    assert negotiated.user_identity_response is None


@pytest.mark.parametrize(
    ("declared", "used"), [(None, 0), (0, 0), (1, 8), (7, 8), (8, 8), (13, 13)]
)
def test_peer_max_pdu_length(declared: int | None, used: int) -> None:
    request = rq(ONE_ECHO)
    answer = AssociateAC(
        "SCP",
        "SCU",
        (PresentationContextAC(1, 0, IMPLICIT),),
        UserInformation(max_length=declared, implementation_class_uid="1.2"),
    )
    assert accepted_by_requestor(request, answer).peer_max_pdu_length == used
    swapped = dataclasses.replace(
        request,
        user_information=dataclasses.replace(request.user_information, max_length=declared),
    )
    assert accepted_by_acceptor(swapped, accept(swapped, policy(ECHO))).peer_max_pdu_length == used


# -- build_request ---------------------------------------------------------------------------
def test_build_request_assigns_odd_ids_and_our_identity() -> None:
    request = build_request(
        " SCP",
        "SCU",
        [(pu.UID(CT), [pu.UID(EXPLICIT)]), (MR, (IMPLICIT, EXPLICIT)), (VERIFICATION, (IMPLICIT,))],
        max_pdu_length=0,
        async_ops=AsyncOpsWindow(0, 1),
        roles=[RoleSelection(CT, True, True)],
        user_identity=IDENTITIES[0],
        extended=[SOPClassExtendedNegotiation(CT, b"\x01")],
        common_extended=[SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2")],
    )
    assert request.called_ae_title == "SCP" and request.calling_ae_title == "SCU"
    assert request.presentation_contexts == (
        PresentationContextRQ(1, CT, (EXPLICIT,)),
        PresentationContextRQ(3, MR, (IMPLICIT, EXPLICIT)),
        PresentationContextRQ(5, VERIFICATION, (IMPLICIT,)),
    )
    assert type(request.presentation_contexts[0].abstract_syntax) is str
    info = request.user_information
    assert info.max_length == 0
    assert info.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert info.implementation_version_name == "DICOMNET_010"
    assert info.async_ops_window == AsyncOpsWindow(0, 1)
    assert info.role_selections == (RoleSelection(CT, True, True),)
    assert info.user_identity == IDENTITIES[0]
    assert info.sop_class_extended == (SOPClassExtendedNegotiation(CT, b"\x01"),)
    assert len(info.sop_class_common_extended) == 1
    assert request.application_context == "1.2.840.10008.3.1.1.1"
    assert request.protocol_version == 1


def test_build_request_limits() -> None:
    many = [(VERIFICATION, (IMPLICIT,))] * 128
    request = build_request("SCP", "SCU", many)
    assert [c.context_id for c in request.presentation_contexts] == list(range(1, 256, 2))
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [*many, (VERIFICATION, (IMPLICIT,))])
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [])
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [(CT, ())])
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [("1.2.x", (IMPLICIT,))])
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [(CT, ("1.2.840.10008.1.2 ",))])
    with pytest.raises(ValueError):
        build_request("", "SCU", [(CT, (IMPLICIT,))])
    with pytest.raises(ValueError):
        build_request("SCP", "A\\B", [(CT, (IMPLICIT,))])
    with pytest.raises(ValueError):
        build_request("SCP", "SCU", [(CT, (IMPLICIT,))], max_pdu_length=1 << 32)


def test_build_request_stops_early_on_an_endless_iterable() -> None:
    def endless() -> Any:
        while True:
            yield (VERIFICATION, (IMPLICIT,))

    with pytest.raises(ValueError):
        build_request("SCP", "SCU", endless())


# -- scale and properties ------------------------------------------------------------------
def test_128_contexts_of_64_transfer_syntaxes(codec: ModuleType) -> None:
    bogus = tuple(f"1.2.826.0.1.3680043.9.{n}" for n in range(63))
    request = build_request(
        "SCP", "SCU", [(f"{PRIVATE}.{i}", (*bogus, EXPLICIT)) for i in range(128)]
    )
    body = codec.encode_pdu(request)[6:]
    assert len(body) > 128 * 64 * 20
    decoded = codec.decode_pdu(1, body)
    answer = accept(decoded, policy(accept_any_storage=True))
    assert [c.result for c in answer.presentation_contexts] == [0] * 128
    assert {c.transfer_syntax for c in answer.presentation_contexts} == {EXPLICIT}
    assert len(accepted_by_requestor(decoded, answer).contexts) == 128


ABSTRACTS = st.sampled_from([VERIFICATION, CT, MR, PRIVATE, PATIENT_ROOT_FIND, "1.02", "", "x"])
SYNTAXES = st.sampled_from([IMPLICIT, EXPLICIT, BIG, JPEG, "1.2.3", "", "1.2.840.10008.1.2\x00"])
BOOLS = st.booleans()


@settings(max_examples=200, deadline=None)
@given(
    contexts=st.lists(
        st.tuples(st.integers(0, 255), ABSTRACTS, st.lists(SYNTAXES, max_size=4).map(tuple)),
        max_size=12,
    ),
    roles=st.lists(st.builds(RoleSelection, ABSTRACTS, BOOLS, BOOLS), max_size=4),
    window=st.none() | st.builds(AsyncOpsWindow, st.integers(0, 5), st.integers(0, 5)),
    supported=st.lists(
        st.builds(
            SupportedContext,
            st.sampled_from([VERIFICATION, CT, MR]),
            st.lists(SYNTAXES.filter(is_valid_uid), min_size=1, max_size=3).map(tuple),
            BOOLS,
            BOOLS,
        ),
        max_size=3,
    ),
    any_storage=BOOLS,
)
def test_any_request_gets_a_consistent_answer(
    contexts: list[tuple[int, str, tuple[str, ...]]],
    roles: list[RoleSelection],
    window: AsyncOpsWindow | None,
    supported: list[SupportedContext],
    any_storage: bool,
) -> None:
    request = rq(*contexts, role_selections=tuple(roles), async_ops_window=window)
    pol = policy(*supported, accept_any_storage=any_storage)
    answer = negotiate_as_acceptor(request, pol)
    if not contexts:
        assert rj(answer) == (1, 1, 1)
        return
    answer = accept_ac(answer)
    assert [c.context_id for c in answer.presentation_contexts] == [c[0] for c in contexts]
    for item, result in zip(
        request.presentation_contexts, answer.presentation_contexts, strict=True
    ):
        assert result.result in (0, 1, 2, 3, 4)
        if result.result == 0:
            assert result.transfer_syntax in item.transfer_syntaxes
            assert is_valid_uid(item.abstract_syntax) and item.context_id % 2 == 1
        else:
            assert result.transfer_syntax == ""
    for role in answer.user_information.role_selections:
        asked = next(r for r in roles if r.sop_class_uid == role.sop_class_uid)
        assert role.scu_role <= asked.scu_role and role.scp_role <= asked.scp_role
    req = accepted_by_requestor(request, answer)
    acc = accepted_by_acceptor(request, answer)
    assert (
        req.contexts.keys()
        == acc.contexts.keys()
        == {c.context_id for c in answer.presentation_contexts if c.result == 0}
    )
    for cid, context in req.contexts.items():
        mirror = acc.contexts[cid]
        assert (context.scu_role, context.scp_role) == (mirror.scp_role, mirror.scu_role)
        assert context.scu_role or context.scp_role
    assert (req.max_operations_invoked, req.max_operations_performed) == (
        acc.max_operations_performed,
        acc.max_operations_invoked,
    )
    encoded = dicomnet_codec.encode_pdu(answer)
    assert dicomnet_codec.decode_pdu(2, encoded[6:]) == answer
