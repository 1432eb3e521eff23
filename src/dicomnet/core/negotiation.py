"""Association negotiation (PS3.8 7.1, 9.3.2-9.3.4; PS3.7 Annex D.3.3).

Theory of operation
-------------------
Pure functions over the values of :mod:`dicomnet.core.pdu`; no I/O, no clock. The
acceptor answers an A-ASSOCIATE-RQ from an :class:`AcceptorPolicy` with an
A-ASSOCIATE-AC or -RJ (:func:`negotiate_as_acceptor`). Both ends then derive
the same agreement, a :class:`Negotiated`, from the two PDUs alone
(:mod:`dicomnet.core.agreement`, whose names this module re-exports, as it
does :func:`build_request`).

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
from dataclasses import dataclass

from dicomnet.core._sop_classes import SOP_CLASSES
from dicomnet.core.agreement import (
    MAX_CONTEXT_ID,
    MAX_PRESENTATION_CONTEXTS,
    MIN_PEER_PDU_LENGTH,
    AcceptedContext,
    Negotiated,
    RoleName,
    _check_range,
    _check_uids,
    _first_per_class,
    _min_window,
    accepted_by_acceptor,
    accepted_by_requestor,
    build_request,
    validate_ae_title,
)
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

_NOT_ABSTRACT_SYNTAXES = frozenset((*ALL_TRANSFER_SYNTAXES, APPLICATION_CONTEXT_NAME))
"""UIDs the standard names that are no SOP class, hence never private storage."""

_EMPTY_RESPONSE_TYPES = frozenset(
    (UserIdentityType.USERNAME, UserIdentityType.USERNAME_AND_PASSCODE)
)
"""User identity types whose positive response is empty (PS3.7 D.3.3.7.2)."""


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
