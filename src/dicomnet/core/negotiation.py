"""Association negotiation (PS3.8 7.1, 9.3.2-9.3.4; PS3.7 Annex D.3.3).

Theory of operation
-------------------
Pure functions over the values of :mod:`dicomnet.core.pdu`; no I/O, no clock. The
acceptor answers an A-ASSOCIATE-RQ from an :class:`AcceptorPolicy` with an
A-ASSOCIATE-AC or -RJ (:func:`negotiate_as_acceptor`). Both ends then derive
the same agreement, a :class:`Negotiated`, from the two PDUs alone, each from
its own point of view (:func:`accepted_by_acceptor`,
:func:`accepted_by_requestor`). The requestor builds its proposal with
:func:`build_request`.

**Rejection.** In this order, each with its A-ASSOCIATE-RJ (result, source,
reason) of PS3.8 Table 9-21:

1. the policy's ``association_request`` hook, when it returns an RJ;
2. application context name not ``1.2.840.10008.3.1.1.1``: (1, 1, 2);
3. protocol version without bit 0 set: (1, 2, 2);
4. called AE title of spaces only (PS3.8 9.3.2: "shall not be used"), or not
   ours when the policy checks it: (1, 1, 7);
5. calling AE title of spaces only, or not on the policy's allow-list: (1, 1, 3);
6. no presentation context, or more than the policy's maximum (128 by
   default, all that odd IDs 1-255 can name): (1, 1, 1);
7. a user identity the ``user_identity`` hook refuses: (1, 1, 1) (PS3.7
   D.3.3.7).

AE titles compare without leading and trailing spaces, which PS3.5 makes
insignificant, and are otherwise exact (case matters).

**Presentation contexts** (PS3.8 9.3.3.2). Anything that passes the checks
above is answered with an AC, even when no context is accepted (PS3.8 allows
it and DCMTK does the same); the requestor then sees every refusal and its
reason. The AC holds one item per proposed context, in the proposed order:

* an even ID, an ID outside 1-255, or an ID proposed more than once (every
  item carrying it): 2, no reason (PS3.8 9.3.2.2 wants odd, unique IDs);
* an abstract syntax that is not a valid UID, or that we do not support: 3;
* no transfer syntax in common: 4; a proposed transfer syntax that is not a
  valid UID can never be in common, as ours all are;
* otherwise 0, with the first transfer syntax of *our* list that the
  requestor proposed (our preference, not the requestor's order).

``accept_any_storage`` also accepts, with the transfer syntaxes of
``storage_transfer_syntaxes``, every abstract syntax that is a valid UID and
either a storage SOP class of the standard or a UID the standard does not name
at all (a private SOP class, or a storage class newer than our table): a
storage SCP stores what it is sent without reading it. SOP classes the
standard names for other services (Query/Retrieve, Worklist, MPPS...) are
still refused unless listed in ``supported_contexts``.

**Roles** (PS3.7 D.3.3.4). The roles in both PDUs are the requestor's.
Without a role selection item the requestor is SCU and the acceptor SCP. For
a SOP class the requestor proposes roles for, the AC answers each role with
*proposed and allowed*, where :class:`SupportedContext` says which roles the
requestor may take; a role the requestor did not propose is never answered
with 1, and an answer of 1 to a role that was not proposed is ignored. The
roles a policy forbids apply with or without role selection: when the
requestor would be left with no role (for instance SCU by default on a class
whose ``scu_role`` is False, or a proposal of neither role), the contexts of
that SOP class are refused with 1 (user rejection) and the role is not
answered. Only the first role item per SOP class counts.

**Extended negotiation** (PS3.7 D.3.3.5, D.3.3.6), only for SOP classes
accepted on at least one context. The ``sop_class_common_extended`` hook
runs first, once per SOP class: returning False declines the SOP class, whose
contexts are then refused with 1 (the sub-item has no answer in an AC, so this
is the only way an acceptor can act on it). The ``sop_class_extended`` hook
then gives the application information to answer with, or None to omit the
answer.

**Asynchronous operations window** (PS3.7 D.3.3.3). Both PDUs state the
window from the requestor's side: *invoked* is how many requests the
requestor may have outstanding (the acceptor performs them), *performed* how
many requests of the acceptor's the requestor will perform at once. The
acceptor answers each with the smaller of the proposal and its own limit,
where 0 means unlimited (so min(0, n) is n), and omits the item when the
request had none; both sides then default to 1. :class:`Negotiated` restates
the window from its owner's point of view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from dicomnet.core._sop_classes import SOP_CLASSES
from dicomnet.core.pdu import (
    APPLICATION_CONTEXT_NAME,
    DEFAULT_MAX_PDU_LENGTH,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    ContextResult,
    PresentationContextAC,
    PresentationContextRQ,
    RejectResult,
    RejectSource,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserIdentityType,
    UserInformation,
)
from dicomnet.core.uids import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    STORAGE_SOP_CLASSES,
    is_valid_uid,
)

__all__ = [
    "MAX_CONTEXT_ID",
    "MAX_PRESENTATION_CONTEXTS",
    "MIN_PEER_PDU_LENGTH",
    "REJECT_APPLICATION_CONTEXT",
    "REJECT_CALLED_AE_TITLE",
    "REJECT_CALLING_AE_TITLE",
    "REJECT_NO_REASON",
    "REJECT_PROTOCOL_VERSION",
    "AcceptedContext",
    "AcceptorPolicy",
    "Negotiated",
    "RoleName",
    "SupportedContext",
    "UserIdentityDecision",
    "accepted_by_acceptor",
    "accepted_by_requestor",
    "build_request",
    "negotiate_as_acceptor",
    "validate_ae_title",
]

MAX_CONTEXT_ID = 255
"""Presentation context IDs are odd integers 1-255 (PS3.8 9.3.2.2)."""

MAX_PRESENTATION_CONTEXTS = 128
"""How many distinct odd IDs fit in 1-255, hence contexts in one association."""

MIN_PEER_PDU_LENGTH = 8
"""The smallest Maximum Length Received we send to: 6 bytes of PDV header and a
2-byte fragment. A peer declaring 1-7 could receive no P-DATA at all; we treat
it as 8 rather than fail every send (PS3.8 D.1)."""

REJECT_NO_REASON = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 1)
"""A-ASSOCIATE-RJ (1, 1, 1): rejected permanently by the service user, no reason given."""

REJECT_APPLICATION_CONTEXT = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 2)
"""A-ASSOCIATE-RJ (1, 1, 2): application context name not supported."""

REJECT_CALLING_AE_TITLE = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 3)
"""A-ASSOCIATE-RJ (1, 1, 3): calling AE title not recognized."""

REJECT_CALLED_AE_TITLE = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 7)
"""A-ASSOCIATE-RJ (1, 1, 7): called AE title not recognized."""

REJECT_PROTOCOL_VERSION = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_PROVIDER_ACSE, 2)
"""A-ASSOCIATE-RJ (1, 2, 2): protocol version not supported."""

RoleName = Literal["scu", "scp"]
"""A role we want to play on a context, for :meth:`Negotiated.context_for`."""

_NOT_ABSTRACT_SYNTAXES = frozenset((*ALL_TRANSFER_SYNTAXES, APPLICATION_CONTEXT_NAME))
"""UIDs the standard names that are no SOP class, hence never private storage."""

_EMPTY_RESPONSE_TYPES = frozenset(
    (UserIdentityType.USERNAME, UserIdentityType.USERNAME_AND_PASSCODE)
)
"""User identity types whose positive response is empty (PS3.7 D.3.3.7.2)."""


# -- local values ------------------------------------------------------------------------
def validate_ae_title(value: str) -> str:
    """Check an AE title we send or answer as, and return it without padding.

    Parameters
    ----------
    value : str
        1 to 16 characters of the default character repertoire, without a
        backslash or control character, and not all spaces (PS3.5 6.2, VR AE).

    Returns
    -------
    str
        ``value`` without leading and trailing spaces, which are not
        significant in an AE title.

    Raises
    ------
    ValueError
        The value breaks one of the rules above (a local error).
    """
    if not isinstance(value, str):
        raise TypeError(f"an AE title is a str, not {type(value).__name__}")
    if not 0 < len(value) <= 16:
        raise ValueError(f"AE title {value!r} must be 1 to 16 characters long")
    if not value.strip(" "):
        raise ValueError("an AE title cannot be all spaces")
    if "\\" in value or any(not 0x20 <= ord(ch) <= 0x7E for ch in value):
        raise ValueError(
            f"AE title {value!r} has a backslash, a control character or a character"
            " outside the default repertoire"
        )
    return value.strip(" ")


def _check_uids(values: Iterable[str], what: str) -> tuple[str, ...]:
    checked = tuple(str(value) for value in values)
    for value in checked:
        if not is_valid_uid(value):
            raise ValueError(f"{what} {value!r} is not a valid UID")
    return checked


def _check_range(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high}, not {value}")


@dataclass(frozen=True, slots=True)
class SupportedContext:
    """An abstract syntax an acceptor supports (PS3.8 9.3.3.2, PS3.7 D.3.3.4).

    Parameters
    ----------
    abstract_syntax : str
        The SOP class UID.
    transfer_syntaxes : sequence of str
        The transfer syntaxes we accept for it, in *our* preference order:
        the first of them that the requestor proposes is chosen.
    scu_role, scp_role : bool
        Whether the *requestor* may act as SCU, and as SCP, of this SOP class.
        The default lets it be SCU only, as with no role selection at all; a
        Query/Retrieve SCP serving C-GET sets ``scp_role`` on the storage
        classes it sends back.

    Raises
    ------
    ValueError
        A UID is not valid, or no transfer syntax is given.
    """

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES
    scu_role: bool = True
    scp_role: bool = False

    def __post_init__(self) -> None:
        (abstract,) = _check_uids((self.abstract_syntax,), "abstract syntax")
        syntaxes = _check_uids(self.transfer_syntaxes, "transfer syntax")
        if not syntaxes:
            raise ValueError(f"no transfer syntax given for {abstract}")
        object.__setattr__(self, "abstract_syntax", abstract)
        object.__setattr__(self, "transfer_syntaxes", syntaxes)


@dataclass(frozen=True, slots=True)
class UserIdentityDecision:
    """What the user identity hook of an :class:`AcceptorPolicy` decides (PS3.7 D.3.3.7).

    Parameters
    ----------
    accepted : bool
        False rejects the association with A-ASSOCIATE-RJ (1, 1, 1).
    server_response : bytes, optional
        Sent back in the AC when the requestor asked for a positive response
        and the identity is Kerberos (3), SAML (4) or JWT (5): the ticket,
        assertion or token. For types 1 and 2 the response is always empty
        (PS3.7 D.3.3.7.2) and this value is ignored.
    """

    accepted: bool
    server_response: bytes | None = None


UserIdentityHook = Callable[[UserIdentityRQ, AssociateRQ], UserIdentityDecision]
ExtendedHook = Callable[[SOPClassExtendedNegotiation], bytes | None]
CommonExtendedHook = Callable[[SOPClassCommonExtendedNegotiation], bool]
AssociationRequestHook = Callable[[AssociateRQ], AssociateRJ | None]


@dataclass(frozen=True, slots=True)
class AcceptorPolicy:
    """How an acceptor answers association requests; every field has a default.

    Parameters
    ----------
    ae_title : str
        Our AE title (checked with :func:`validate_ae_title`).
    require_called_ae_title : bool
        Reject (1, 1, 7) a request whose called AE title is not ours.
    allowed_calling_ae_titles : iterable of str, optional
        When given, reject (1, 1, 3) every other calling AE title.
    supported_contexts : sequence of SupportedContext
        The abstract syntaxes we accept; the first entry for a UID counts.
    accept_any_storage : bool
        Also accept storage and unknown SOP classes (see the module docstring)
        with ``storage_transfer_syntaxes``, the requestor as SCU only.
    storage_transfer_syntaxes : sequence of str
        Our preference order for those; by default every transfer syntax of
        :mod:`dicomnet.core.uids`, native first, lossy last.
    storage_scp_role : bool
        Let the requestor also take the SCP role of those storage classes when
        it asks for it by role selection: a Query/Retrieve SCP serving C-GET
        sends its C-STORE sub-operations that way (PS3.4 C.4.3).
    max_pdu_length : int
        Our Maximum Length Received (0 = unlimited).
    max_operations_performed, max_operations_invoked : int
        Our own limits of requests served at once and of requests we send at
        once (0 = unlimited), for the asynchronous operations window.
    implementation_class_uid, implementation_version_name : str
        What we say we are (PS3.7 D.3.3.2).
    max_presentation_contexts : int
        A request with more contexts is rejected (1, 1, 1); 1-128.
    association_request : callable, optional
        ``hook(rq) -> AssociateRJ | None``, called first on every request:
        an RJ is answered as is, None goes on with negotiation.
    user_identity : callable, optional
        ``hook(identity, rq) -> UserIdentityDecision``, called when the
        request carries a user identity. Without it every identity is
        accepted and no response is sent, since nothing was verified.
    sop_class_extended : callable, optional
        ``hook(item) -> bytes | None``: the application information to answer
        for an accepted SOP class, or None to send no answer.
    sop_class_common_extended : callable, optional
        ``hook(item) -> bool``: False declines the SOP class (its contexts are
        refused with 1, user rejection).

    Exceptions raised by a hook propagate to the caller.
    """

    ae_title: str = "DICOMNET"
    require_called_ae_title: bool = False
    allowed_calling_ae_titles: frozenset[str] | None = None
    supported_contexts: tuple[SupportedContext, ...] = ()
    accept_any_storage: bool = False
    storage_transfer_syntaxes: tuple[str, ...] = ALL_TRANSFER_SYNTAXES
    storage_scp_role: bool = False
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    max_operations_performed: int = 16
    max_operations_invoked: int = 16
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str | None = IMPLEMENTATION_VERSION_NAME
    max_presentation_contexts: int = MAX_PRESENTATION_CONTEXTS
    association_request: AssociationRequestHook | None = None
    user_identity: UserIdentityHook | None = None
    sop_class_extended: ExtendedHook | None = None
    sop_class_common_extended: CommonExtendedHook | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        if self.allowed_calling_ae_titles is not None:
            allowed = frozenset(title.strip(" ") for title in self.allowed_calling_ae_titles)
            object.__setattr__(self, "allowed_calling_ae_titles", allowed)
        object.__setattr__(self, "supported_contexts", tuple(self.supported_contexts))
        syntaxes = _check_uids(self.storage_transfer_syntaxes, "storage transfer syntax")
        object.__setattr__(self, "storage_transfer_syntaxes", syntaxes)
        _check_range(self.max_pdu_length, 0, 0xFFFFFFFF, "max_pdu_length")
        _check_range(self.max_operations_performed, 0, 0xFFFF, "max_operations_performed")
        _check_range(self.max_operations_invoked, 0, 0xFFFF, "max_operations_invoked")
        _check_range(
            self.max_presentation_contexts,
            1,
            MAX_PRESENTATION_CONTEXTS,
            "max_presentation_contexts",
        )
        _check_uids((self.implementation_class_uid,), "implementation class UID")
        name = self.implementation_version_name
        if name is not None and not 0 < len(name) <= 16:
            raise ValueError(f"implementation version name {name!r} must be 1 to 16 characters")


# -- the agreement -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AcceptedContext:
    """An accepted presentation context, from one end's point of view.

    Attributes
    ----------
    context_id : int
    abstract_syntax, transfer_syntax : str
    scu_role : bool
        Whether *we* (the end whose :class:`Negotiated` holds this context)
        may invoke operations of the SOP class on it, as its SCU.
    scp_role : bool
        Whether we perform them, as its SCP. With no role selection the
        requestor is SCU only and the acceptor SCP only (PS3.7 D.3.3.4).
    """

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = False


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both ends agreed, from one end's point of view (PS3.8 7.1.1).

    Attributes
    ----------
    contexts : dict of int to AcceptedContext
        The usable accepted contexts by ID, in ascending ID order.
    peer_max_pdu_length : int
        The largest P-DATA-TF we may send (0 = unlimited; 1-7 read as 8).
    our_max_pdu_length : int
        The largest we declared we receive (0 = unlimited).
    max_operations_invoked : int
        How many of our requests may be outstanding at the peer at once.
    max_operations_performed : int
        How many of the peer's requests may be outstanding with us at once.
        Both are 1 without window negotiation and 0 when unlimited.
    peer_implementation_class_uid, peer_implementation_version_name : str
        What the peer says it is (the version name is None when absent).
    user_identity : UserIdentityRQ or None
        The identity the requestor presented.
    user_identity_response : bytes or None
        The acceptor's positive response, None when it sent none.
    sop_class_extended : dict of str to bytes
        The acceptor's extended negotiation answers, by SOP class.
    sop_class_common_extended : dict of str to SOPClassCommonExtendedNegotiation
        The requestor's common extended items for accepted SOP classes.
    called_ae_title, calling_ae_title : str
        As in the request, without padding.
    """

    contexts: dict[int, AcceptedContext]
    peer_max_pdu_length: int
    our_max_pdu_length: int
    max_operations_invoked: int = 1
    max_operations_performed: int = 1
    peer_implementation_class_uid: str = ""
    peer_implementation_version_name: str | None = None
    user_identity: UserIdentityRQ | None = None
    user_identity_response: bytes | None = None
    sop_class_extended: dict[str, bytes] = field(default_factory=dict)
    sop_class_common_extended: dict[str, SOPClassCommonExtendedNegotiation] = field(
        default_factory=dict
    )
    called_ae_title: str = ""
    calling_ae_title: str = ""

    def contexts_for(
        self, abstract_syntax: str, *, role: RoleName | None = None
    ) -> list[AcceptedContext]:
        """The accepted contexts of a SOP class, by ascending ID.

        Parameters
        ----------
        abstract_syntax : str
        role : {"scu", "scp"}, optional
            Keep only the contexts on which we may play that role.
        """
        wanted = _role_filter(role)
        return [
            context
            for context in self.contexts.values()
            if context.abstract_syntax == abstract_syntax and wanted(context)
        ]

    def context_for(
        self,
        abstract_syntax: str,
        transfer_syntax: str | None = None,
        *,
        role: RoleName | None = None,
    ) -> AcceptedContext | None:
        """Choose one accepted context for a SOP class.

        Parameters
        ----------
        abstract_syntax : str
        transfer_syntax : str, optional
            Preferred: a context with this transfer syntax wins (a C-STORE SCU
            sends a file in its own encoding when it can); failing that the
            lowest-ID context of the class is returned, and the caller checks
            its ``transfer_syntax`` and converts.
        role : {"scu", "scp"}, optional
            Consider only contexts on which we may play that role.

        Returns
        -------
        AcceptedContext or None
            None when no context of the class (in that role) was accepted.
        """
        candidates = self.contexts_for(abstract_syntax, role=role)
        if transfer_syntax is not None:
            for context in candidates:
                if context.transfer_syntax == transfer_syntax:
                    return context
        return candidates[0] if candidates else None


def _role_filter(role: RoleName | None) -> Callable[[AcceptedContext], bool]:
    if role is None:
        return lambda context: True
    if role == "scu":
        return lambda context: context.scu_role
    if role == "scp":
        return lambda context: context.scp_role
    raise ValueError(f"role must be 'scu', 'scp' or None, not {role!r}")


# -- acceptor: association checks --------------------------------------------------------
def _wrong_application_context(rq: AssociateRQ, policy: AcceptorPolicy) -> bool:
    return rq.application_context != APPLICATION_CONTEXT_NAME


def _protocol_version_unsupported(rq: AssociateRQ, policy: AcceptorPolicy) -> bool:
    return not rq.protocol_version & 1


def _called_ae_not_ours(rq: AssociateRQ, policy: AcceptorPolicy) -> bool:
    called = rq.called_ae_title.strip(" ")
    return not called or (policy.require_called_ae_title and called != policy.ae_title)


def _calling_ae_not_allowed(rq: AssociateRQ, policy: AcceptorPolicy) -> bool:
    calling = rq.calling_ae_title.strip(" ")
    allowed = policy.allowed_calling_ae_titles
    return not calling or (allowed is not None and calling not in allowed)


def _context_count_refused(rq: AssociateRQ, policy: AcceptorPolicy) -> bool:
    return not 0 < len(rq.presentation_contexts) <= policy.max_presentation_contexts


_Check = Callable[[AssociateRQ, AcceptorPolicy], bool]

ASSOCIATION_CHECKS: tuple[tuple[_Check, AssociateRJ], ...] = (
    (_wrong_application_context, REJECT_APPLICATION_CONTEXT),
    (_protocol_version_unsupported, REJECT_PROTOCOL_VERSION),
    (_called_ae_not_ours, REJECT_CALLED_AE_TITLE),
    (_calling_ae_not_allowed, REJECT_CALLING_AE_TITLE),
    (_context_count_refused, REJECT_NO_REASON),
)
"""Whole-association checks in order, each with the A-ASSOCIATE-RJ it answers."""


# -- acceptor: presentation contexts -----------------------------------------------------
@dataclass(slots=True)
class _Answer:
    """One presentation context while it is being answered."""

    item: PresentationContextRQ
    result: int
    transfer_syntax: str = ""
    allowed: tuple[bool, bool] = (True, False)

    @property
    def accepted(self) -> bool:
        return self.result == ContextResult.ACCEPTANCE

    def refuse(self, result: int) -> None:
        self.result = result
        self.transfer_syntax = ""


_ANY_STORAGE_ROLES = (True, False)
"""Roles allowed to the requestor on contexts accepted by ``accept_any_storage``."""


def _is_storage_candidate(abstract_syntax: str) -> bool:
    """A storage SOP class, or a UID the standard does not name (private or newer)."""
    return abstract_syntax in STORAGE_SOP_CLASSES or (
        abstract_syntax not in SOP_CLASSES and abstract_syntax not in _NOT_ABSTRACT_SYNTAXES
    )


def _first_common(ours: Sequence[str], proposed: Sequence[str]) -> str | None:
    """The first of our transfer syntaxes that the requestor proposed."""
    offered = set(proposed)
    for syntax in ours:
        if syntax in offered:
            return syntax
    return None


def _answer_context(
    item: PresentationContextRQ,
    repeated: bool,
    supported: dict[str, SupportedContext],
    policy: AcceptorPolicy,
) -> _Answer:
    cid = item.context_id
    if repeated or cid % 2 == 0 or not 1 <= cid <= MAX_CONTEXT_ID:
        return _Answer(item, ContextResult.NO_REASON)
    abstract = item.abstract_syntax
    if not is_valid_uid(abstract):
        return _Answer(item, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED)
    ours = supported.get(abstract)
    if ours is not None:
        syntaxes: Sequence[str] = ours.transfer_syntaxes
        allowed = (ours.scu_role, ours.scp_role)
    elif policy.accept_any_storage and _is_storage_candidate(abstract):
        syntaxes = policy.storage_transfer_syntaxes
        allowed = (True, True) if policy.storage_scp_role else _ANY_STORAGE_ROLES
    else:
        return _Answer(item, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED)
    chosen = _first_common(syntaxes, item.transfer_syntaxes)
    if chosen is None:
        return _Answer(item, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "", allowed)
    return _Answer(item, ContextResult.ACCEPTANCE, chosen, allowed)


def _answer_contexts(rq: AssociateRQ, policy: AcceptorPolicy) -> list[_Answer]:
    supported: dict[str, SupportedContext] = {}
    for context in policy.supported_contexts:
        supported.setdefault(context.abstract_syntax, context)
    counts = Counter(item.context_id for item in rq.presentation_contexts)
    return [
        _answer_context(item, counts[item.context_id] > 1, supported, policy)
        for item in rq.presentation_contexts
        if 0 <= item.context_id <= 0xFF  # anything else cannot come off the wire
    ]


class _PerClass(Protocol):
    @property
    def sop_class_uid(self) -> str: ...


_T = TypeVar("_T", bound=_PerClass)


def _first_per_class(items: Iterable[_T]) -> dict[str, _T]:
    """The first sub-item per SOP class: PS3.7 D.3.3 allows one per class."""
    first: dict[str, _T] = {}
    for item in items:
        first.setdefault(item.sop_class_uid, item)
    return first


def _accepted_classes(answers: Iterable[_Answer]) -> dict[str, tuple[bool, bool]]:
    """Accepted SOP classes with the roles the requestor is allowed on them."""
    classes: dict[str, tuple[bool, bool]] = {}
    for answer in answers:
        if answer.accepted:
            classes.setdefault(answer.item.abstract_syntax, answer.allowed)
    return classes


def _refuse_class(answers: Iterable[_Answer], sop_class: str) -> None:
    for answer in answers:
        if answer.accepted and answer.item.abstract_syntax == sop_class:
            answer.refuse(ContextResult.USER_REJECTION)


def _negotiate_roles(answers: list[_Answer], rq: AssociateRQ) -> dict[str, RoleSelection]:
    """Answer role selection (PS3.7 D.3.3.4), refusing classes left without a role."""
    proposed = _first_per_class(rq.user_information.role_selections)
    replies: dict[str, RoleSelection] = {}
    for sop_class, (allow_scu, allow_scp) in _accepted_classes(answers).items():
        asked = proposed.get(sop_class)
        if asked is None:
            scu, scp = allow_scu, False  # the default roles, if allowed
        else:
            scu, scp = asked.scu_role and allow_scu, asked.scp_role and allow_scp
        if not (scu or scp):
            _refuse_class(answers, sop_class)
        elif asked is not None:
            replies[sop_class] = RoleSelection(sop_class, scu, scp)
    return replies


def _negotiate_common_extended(
    answers: list[_Answer], rq: AssociateRQ, policy: AcceptorPolicy
) -> None:
    hook = policy.sop_class_common_extended
    if hook is None:
        return
    accepted = _accepted_classes(answers)
    for sop_class, item in _first_per_class(rq.user_information.sop_class_common_extended).items():
        if sop_class in accepted and not hook(item):
            _refuse_class(answers, sop_class)


def _negotiate_extended(
    answers: list[_Answer], rq: AssociateRQ, policy: AcceptorPolicy
) -> tuple[SOPClassExtendedNegotiation, ...]:
    hook = policy.sop_class_extended
    if hook is None:
        return ()
    accepted = _accepted_classes(answers)
    replies = []
    for sop_class, item in _first_per_class(rq.user_information.sop_class_extended).items():
        if sop_class in accepted:
            info = hook(item)
            if info is not None:
                replies.append(SOPClassExtendedNegotiation(sop_class, bytes(info)))
    return tuple(replies)


# -- acceptor: user information ------------------------------------------------------------
def _min_window(proposed: int, ours: int) -> int:
    """The smaller of two window limits where 0 means unlimited (PS3.7 D.3.3.3)."""
    if proposed == 0:
        return ours
    if ours == 0:
        return proposed
    return min(proposed, ours)


def _answer_window(rq: AssociateRQ, policy: AcceptorPolicy) -> AsyncOpsWindow | None:
    proposed = rq.user_information.async_ops_window
    if proposed is None:
        return None
    return AsyncOpsWindow(
        _min_window(proposed.max_operations_invoked, policy.max_operations_performed),
        _min_window(proposed.max_operations_performed, policy.max_operations_invoked),
    )


def _answer_user_identity(
    rq: AssociateRQ, policy: AcceptorPolicy
) -> tuple[bool, UserIdentityAC | None]:
    """(accepted, the AC's sub-item) for the request's user identity (PS3.7 D.3.3.7)."""
    identity = rq.user_information.user_identity
    if identity is None or policy.user_identity is None:
        return True, None
    decision = policy.user_identity(identity, rq)
    if not decision.accepted:
        return False, None
    if not identity.positive_response_requested:
        return True, None
    if identity.identity_type in _EMPTY_RESPONSE_TYPES:
        return True, UserIdentityAC(b"")
    return True, UserIdentityAC(bytes(decision.server_response or b""))


def negotiate_as_acceptor(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateAC | AssociateRJ:
    """Answer an A-ASSOCIATE-RQ (PS3.8 9.3.2-9.3.4, PS3.7 D.3.3).

    Parameters
    ----------
    rq : AssociateRQ
        The request as decoded; anything a peer can put in it is handled.
    policy : AcceptorPolicy

    Returns
    -------
    AssociateAC or AssociateRJ
        The module docstring lists every rule and its order.
    """
    if policy.association_request is not None:
        rejection = policy.association_request(rq)
        if rejection is not None:
            return rejection
    for refused, rejection in ASSOCIATION_CHECKS:
        if refused(rq, policy):
            return rejection
    identity_accepted, identity_ac = _answer_user_identity(rq, policy)
    if not identity_accepted:
        return REJECT_NO_REASON

    answers = _answer_contexts(rq, policy)
    roles = _negotiate_roles(answers, rq)
    _negotiate_common_extended(answers, rq, policy)
    accepted = _accepted_classes(answers)
    extended = _negotiate_extended(answers, rq, policy)
    return AssociateAC(
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
        presentation_contexts=tuple(
            PresentationContextAC(a.item.context_id, a.result, a.transfer_syntax) for a in answers
        ),
        user_information=UserInformation(
            max_length=policy.max_pdu_length,
            implementation_class_uid=policy.implementation_class_uid,
            implementation_version_name=policy.implementation_version_name,
            async_ops_window=_answer_window(rq, policy),
            role_selections=tuple(role for uid, role in roles.items() if uid in accepted),
            sop_class_extended=extended,
            user_identity_ac=identity_ac,
        ),
    )


# -- both ends: the agreement --------------------------------------------------------------
def _requestor_roles(
    sop_class: str,
    proposed: dict[str, RoleSelection],
    answered: dict[str, RoleSelection],
) -> tuple[bool, bool]:
    """The requestor's (SCU, SCP) roles on a SOP class (PS3.7 D.3.3.4)."""
    asked = proposed.get(sop_class)
    answer = answered.get(sop_class)
    if asked is None or answer is None:
        return True, False
    return asked.scu_role and answer.scu_role, asked.scp_role and answer.scp_role


def _agreed_contexts(
    rq: AssociateRQ, ac: AssociateAC, *, as_requestor: bool
) -> dict[int, AcceptedContext]:
    """Accepted contexts both PDUs agree on; anything inconsistent counts as refused.

    A context is usable when its ID was proposed exactly once and answered
    exactly once, with acceptance, with a transfer syntax proposed for it, and
    leaves the requestor at least one role.
    """
    proposed_ids = Counter(item.context_id for item in rq.presentation_contexts)
    proposed = {
        item.context_id: item
        for item in rq.presentation_contexts
        if proposed_ids[item.context_id] == 1
    }
    answered_ids = Counter(item.context_id for item in ac.presentation_contexts)
    asked_roles = _first_per_class(rq.user_information.role_selections)
    answered_roles = _first_per_class(ac.user_information.role_selections)
    contexts: dict[int, AcceptedContext] = {}
    for answer in sorted(ac.presentation_contexts, key=lambda a: a.context_id):
        item = proposed.get(answer.context_id)
        if (
            item is None
            or answered_ids[answer.context_id] != 1
            or answer.result != ContextResult.ACCEPTANCE
            or answer.transfer_syntax not in item.transfer_syntaxes
        ):
            continue
        scu, scp = _requestor_roles(item.abstract_syntax, asked_roles, answered_roles)
        if not (scu or scp):
            continue
        if not as_requestor:
            scu, scp = scp, scu
        contexts[answer.context_id] = AcceptedContext(
            answer.context_id, item.abstract_syntax, answer.transfer_syntax, scu, scp
        )
    return contexts


def _agreed_window(rq: AssociateRQ, ac: AssociateAC) -> tuple[int, int]:
    """(requestor invokes, requestor performs), each at most what was proposed."""
    proposed = rq.user_information.async_ops_window
    answered = ac.user_information.async_ops_window
    if proposed is None or answered is None:
        return 1, 1
    return (
        _min_window(proposed.max_operations_invoked, answered.max_operations_invoked),
        _min_window(proposed.max_operations_performed, answered.max_operations_performed),
    )


def _peer_length(max_length: int | None) -> int:
    if not max_length:
        return 0
    return max(max_length, MIN_PEER_PDU_LENGTH)


def _agreement(rq: AssociateRQ, ac: AssociateAC, *, as_requestor: bool) -> Negotiated:
    contexts = _agreed_contexts(rq, ac, as_requestor=as_requestor)
    classes = {context.abstract_syntax for context in contexts.values()}
    rq_info, ac_info = rq.user_information, ac.user_information
    invoked, performed = _agreed_window(rq, ac)
    if not as_requestor:
        invoked, performed = performed, invoked
    peer_info, our_info = (ac_info, rq_info) if as_requestor else (rq_info, ac_info)
    asked_extended = _first_per_class(rq_info.sop_class_extended)
    identity_ac = ac_info.user_identity_ac if rq_info.user_identity is not None else None
    return Negotiated(
        contexts=contexts,
        peer_max_pdu_length=_peer_length(peer_info.max_length),
        our_max_pdu_length=our_info.max_length or 0,
        max_operations_invoked=invoked,
        max_operations_performed=performed,
        peer_implementation_class_uid=peer_info.implementation_class_uid,
        peer_implementation_version_name=peer_info.implementation_version_name,
        user_identity=rq_info.user_identity,
        user_identity_response=identity_ac.server_response if identity_ac else None,
        sop_class_extended={
            uid: item.application_info
            for uid, item in _first_per_class(ac_info.sop_class_extended).items()
            if uid in classes and uid in asked_extended
        },
        sop_class_common_extended={
            uid: item
            for uid, item in _first_per_class(rq_info.sop_class_common_extended).items()
            if uid in classes
        },
        called_ae_title=rq.called_ae_title.strip(" "),
        calling_ae_title=rq.calling_ae_title.strip(" "),
    )


def accepted_by_requestor(rq: AssociateRQ, ac: AssociateAC) -> Negotiated:
    """The agreement as the requestor sees it, checking the acceptor's answer.

    Parameters
    ----------
    rq : AssociateRQ
        What we proposed.
    ac : AssociateAC
        The peer's answer. Nothing in it raises: a context ID we did not
        propose, answered twice, or accepted with a transfer syntax we did not
        propose for it, is treated as refused; a role we did not propose is
        ignored; a window larger than we proposed is cut to our proposal.
    """
    return _agreement(rq, ac, as_requestor=True)


def accepted_by_acceptor(rq: AssociateRQ, ac: AssociateAC) -> Negotiated:
    """The agreement as the acceptor sees it (roles and window mirrored).

    Parameters
    ----------
    rq : AssociateRQ
        The peer's request.
    ac : AssociateAC
        Our answer, as :func:`negotiate_as_acceptor` built it.
    """
    return _agreement(rq, ac, as_requestor=False)


# -- requestor -----------------------------------------------------------------------------
def build_request(
    called_ae_title: str,
    calling_ae_title: str,
    contexts: Iterable[tuple[str, Sequence[str]]],
    *,
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    async_ops: AsyncOpsWindow | None = None,
    roles: Sequence[RoleSelection] = (),
    user_identity: UserIdentityRQ | None = None,
    extended: Sequence[SOPClassExtendedNegotiation] = (),
    common_extended: Sequence[SOPClassCommonExtendedNegotiation] = (),
) -> AssociateRQ:
    """An A-ASSOCIATE-RQ from dicomnet (PS3.8 9.3.2).

    Parameters
    ----------
    called_ae_title, calling_ae_title : str
        Checked with :func:`validate_ae_title`.
    contexts : iterable of (abstract syntax, transfer syntaxes)
        Proposed in order with context IDs 1, 3, 5, ...; 1 to 128 of them,
        each with at least one transfer syntax, all valid UIDs.
    max_pdu_length : int
        Our Maximum Length Received (0 = unlimited).
    async_ops : AsyncOpsWindow, optional
        The window to propose, from our side (invoked = our requests).
    roles, user_identity, extended, common_extended
        The optional user information sub-items (PS3.7 D.3.3.4-D.3.3.7).

    Raises
    ------
    ValueError
        Any of the rules above is broken (a local error).
    """
    items = []
    for index, (abstract, syntaxes) in enumerate(contexts):
        if index >= MAX_PRESENTATION_CONTEXTS:
            raise ValueError(
                f"more than {MAX_PRESENTATION_CONTEXTS} presentation contexts proposed"
            )
        (abstract_syntax,) = _check_uids((abstract,), "abstract syntax")
        transfer_syntaxes = _check_uids(syntaxes, "transfer syntax")
        if not transfer_syntaxes:
            raise ValueError(f"no transfer syntax proposed for {abstract_syntax}")
        items.append(PresentationContextRQ(2 * index + 1, abstract_syntax, transfer_syntaxes))
    if not items:
        raise ValueError("an association needs at least one presentation context")
    _check_range(max_pdu_length, 0, 0xFFFFFFFF, "max_pdu_length")
    return AssociateRQ(
        called_ae_title=validate_ae_title(called_ae_title),
        calling_ae_title=validate_ae_title(calling_ae_title),
        presentation_contexts=tuple(items),
        user_information=UserInformation(
            max_length=max_pdu_length,
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=IMPLEMENTATION_VERSION_NAME,
            async_ops_window=async_ops,
            role_selections=tuple(roles),
            sop_class_extended=tuple(extended),
            sop_class_common_extended=tuple(common_extended),
            user_identity=user_identity,
        ),
    )
