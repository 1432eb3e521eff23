"""Value types and constants of the PS3.8 Upper Layer PDUs.

Association set-up happens once per association, so its PDUs are modelled as
frozen, slotted dataclasses that both codecs build and consume. The P-DATA
path does not use objects: the codec yields ``(context_id, control, view)``
tuples there (see :mod:`dicomnet.core.codec`).

Text fields decode as latin-1 so that any byte a hostile peer sends maps to a
character without a decode error; UIDs lose one trailing NUL or space (PS3.8
9.3.2.2 forbids padding, some peers pad anyway) and AE titles lose leading and
trailing spaces (PS3.8 9.3.2). Validation of UIDs and AE titles is the
association layer's job, not the codec's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "APPLICATION_CONTEXT_NAME",
    "DEFAULT_MAX_ASSOCIATE_LENGTH",
    "DEFAULT_MAX_PDU_LENGTH",
    "PDU",
    "UNLIMITED_RECEIVE_CAP",
    "UNLIMITED_SEND_PDU_LENGTH",
    "Abort",
    "AbortSource",
    "AssociateAC",
    "AssociateRJ",
    "AssociateRQ",
    "AsyncOpsWindow",
    "ContextResult",
    "ItemType",
    "PDUType",
    "PDataTF",
    "PresentationContextAC",
    "PresentationContextRQ",
    "RejectResult",
    "RejectSource",
    "ReleaseRP",
    "ReleaseRQ",
    "RoleSelection",
    "SOPClassCommonExtendedNegotiation",
    "SOPClassExtendedNegotiation",
    "UserIdentityAC",
    "UserIdentityRQ",
    "UserIdentityType",
    "UserInformation",
]

APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"
"""The DICOM Application Context Name (PS3.7 Annex A.2.1)."""

DEFAULT_MAX_PDU_LENGTH = 262_144
"""Our default Maximum Length Received: the largest P-DATA-TF variable field we accept."""

DEFAULT_MAX_ASSOCIATE_LENGTH = 1 << 20
"""Cap on an A-ASSOCIATE-RQ/AC body, checked from the header (DCMTK uses 1 MiB too)."""

UNLIMITED_SEND_PDU_LENGTH = 1 << 20
"""PDU size we send when the peer declares Maximum Length 0 (unlimited)."""

UNLIMITED_RECEIVE_CAP = 64 << 20
"""Largest P-DATA-TF body we accept when our own Maximum Length is 0 (unlimited)."""


class PDUType(IntEnum):
    """PDU types (PS3.8 Table 9-11 ff)."""

    ASSOCIATE_RQ = 0x01
    ASSOCIATE_AC = 0x02
    ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    RELEASE_RQ = 0x05
    RELEASE_RP = 0x06
    ABORT = 0x07


class ItemType(IntEnum):
    """Item and sub-item types of A-ASSOCIATE PDUs (PS3.8 9.3.2, Annex D)."""

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNC_OPS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    SOP_CLASS_EXTENDED = 0x56
    SOP_CLASS_COMMON_EXTENDED = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


class ContextResult(IntEnum):
    """Presentation context results (PS3.8 Table 9-18)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ result (PS3.8 Table 9-21)."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ source (PS3.8 Table 9-21)."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class AbortSource(IntEnum):
    """A-ABORT source (PS3.8 Table 9-26)."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class UserIdentityType(IntEnum):
    """User Identity Type of the user identity sub-item (PS3.7 Table D.3-14)."""

    USERNAME = 1
    USERNAME_AND_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """A presentation context item of an A-ASSOCIATE-RQ (PS3.8 9.3.2.2)."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """A presentation context item of an A-ASSOCIATE-AC (PS3.8 9.3.3.2).

    ``transfer_syntax`` is ``""`` when the item carried no transfer syntax
    sub-item; it is not significant unless ``result`` is 0 (acceptance).
    """

    context_id: int
    result: int
    transfer_syntax: str = ""


@dataclass(frozen=True, slots=True)
class AsyncOpsWindow:
    """Asynchronous Operations Window sub-item (PS3.7 D.3.3.3); 0 means unlimited."""

    max_operations_invoked: int
    max_operations_performed: int


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4)."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """SOP Class Extended Negotiation sub-item (PS3.7 D.3.3.5)."""

    sop_class_uid: str
    application_info: bytes


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """SOP Class Common Extended Negotiation sub-item (PS3.7 D.3.3.6)."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """User Identity Negotiation sub-item, request form (PS3.7 D.3.3.7.1)."""

    identity_type: int
    positive_response_requested: bool
    primary_field: bytes
    secondary_field: bytes = b""


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """User Identity Negotiation sub-item, accept form (PS3.7 D.3.3.7.2)."""

    server_response: bytes


@dataclass(frozen=True, slots=True)
class UserInformation:
    """The User Information item (PS3.8 9.3.2.3) and its sub-items.

    ``max_length`` is ``None`` when the sub-item was absent; 0 means unlimited.
    """

    max_length: int | None = None
    implementation_class_uid: str = ""
    implementation_version_name: str | None = None
    async_ops_window: AsyncOpsWindow | None = None
    role_selections: tuple[RoleSelection, ...] = ()
    sop_class_extended: tuple[SOPClassExtendedNegotiation, ...] = ()
    sop_class_common_extended: tuple[SOPClassCommonExtendedNegotiation, ...] = ()
    user_identity: UserIdentityRQ | None = None
    user_identity_ac: UserIdentityAC | None = None


@dataclass(frozen=True, slots=True)
class AssociateRQ:
    """A-ASSOCIATE-RQ PDU (PS3.8 9.3.2)."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_information: UserInformation = field(default_factory=UserInformation)
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1


@dataclass(frozen=True, slots=True)
class AssociateAC:
    """A-ASSOCIATE-AC PDU (PS3.8 9.3.3); the AE titles echo the request's."""

    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation = field(default_factory=UserInformation)
    application_context: str = APPLICATION_CONTEXT_NAME
    protocol_version: int = 1


@dataclass(frozen=True, slots=True)
class AssociateRJ:
    """A-ASSOCIATE-RJ PDU (PS3.8 9.3.4)."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class ReleaseRQ:
    """A-RELEASE-RQ PDU (PS3.8 9.3.6)."""


@dataclass(frozen=True, slots=True)
class ReleaseRP:
    """A-RELEASE-RP PDU (PS3.8 9.3.7)."""


@dataclass(frozen=True, slots=True)
class Abort:
    """A-ABORT PDU (PS3.8 9.3.8)."""

    source: int
    reason: int


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF PDU (PS3.8 9.3.5) as a value, for tests and tools.

    Each PDV is ``(context_id, message_control_header, fragment)``. The hot
    path never builds this object; it uses ``parse_pdata`` and
    ``fragment_message`` of :mod:`dicomnet.core.codec`.
    """

    pdvs: tuple[tuple[int, int, bytes], ...]


PDU = AssociateRQ | AssociateAC | AssociateRJ | PDataTF | ReleaseRQ | ReleaseRP | Abort
