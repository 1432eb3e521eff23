"""Association negotiation (PS3.8 7.1, 9.3.2-9.3.4; PS3.7 Annex D.3.3).

Theory of operation
-------------------
Pure functions over the values of :mod:`dicomnet.pdu`. The acceptor answers an
A-ASSOCIATE-RQ from an :class:`AcceptorPolicy` with an A-ASSOCIATE-AC or -RJ
(:func:`negotiate_as_acceptor`); both ends then derive the same
:class:`Negotiated` agreement from the two PDUs, each from its own point of
view (:func:`accepted_by_acceptor`, :func:`accepted_by_requestor`).

Rejections, in the order they are checked, with their (result, source, reason):
application context name not DICOM's (1, 1, 2); protocol version without bit 0
(1, 2, 2); called AE title not ours when checked (1, 1, 7); calling AE title
not allowed (1, 1, 3); no presentation context, or more than the policy's
maximum (1, 1, 1); a user identity the hook refuses (1, 1, 1). Otherwise an AC
is answered, even when every context is refused (as DCMTK does; PS3.8 allows
it), and each context carries its own result: an even, out-of-range or
duplicate context ID is refused with 2 (no reason); an abstract syntax that is
not a UID or not supported with 3; no common transfer syntax with 4.

The asynchronous operations window (PS3.7 D.3.3.3) is stated from the
requestor's point of view in both PDUs: *invoked* is how many requests the
requestor may have outstanding, *performed* how many the acceptor's requests
it will serve. 0 means unlimited. The acceptor answers each value with the
smaller of the proposal and its own limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dicomnet._sop_classes import SOP_CLASSES
from dicomnet.pdu import (
    APPLICATION_CONTEXT_NAME,
    DEFAULT_MAX_PDU_LENGTH,
    AssociateAC,
    AssociateRJ,
    AssociateRQ,
    AsyncOpsWindow,
    ContextResult,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomnet.uids import (
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    STORAGE_SOP_CLASSES,
    is_valid_uid,
)

__all__ = [
    "AcceptedContext",
    "AcceptorPolicy",
    "Negotiated",
    "SupportedContext",
    "UserIdentityDecision",
    "accepted_by_acceptor",
    "accepted_by_requestor",
    "build_request",
    "negotiate_as_acceptor",
    "validate_ae_title",
]

MAX_CONTEXT_ID = 255


@dataclass(frozen=True, slots=True)
class SupportedContext:
    """An abstract syntax we accept, with transfer syntaxes in our preference order.

    ``scu_role`` / ``scp_role`` say which roles the *requestor* may take when it
    proposes role selection (PS3.7 D.3.3.4); a C-GET SCU proposes the SCP role
    for the storage classes it wants to receive.
    """

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES
    scu_role: bool = True
    scp_role: bool = True


@dataclass(frozen=True, slots=True)
class UserIdentityDecision:
    """What a user identity hook decides (PS3.7 D.3.3.7).

    ``server_response`` goes back in the AC when the requestor asked for a
    positive response (empty for types 1 and 2, a ticket or assertion for
    Kerberos, SAML and JWT).
    """

    accepted: bool
    server_response: bytes = b""


@dataclass(frozen=True, slots=True)
class AcceptorPolicy:
    """How a listener answers association requests; every field has a default."""

    ae_title: str = "DICOMNET"
    require_called_ae_title: bool = False
    allowed_calling_ae_titles: frozenset[str] | None = None
    supported_contexts: tuple[SupportedContext, ...] = ()
    accept_any_storage: bool = False
    """Also accept every storage SOP class, and any SOP class UID unknown to the
    standard (private storage), with any transfer syntax of
    :data:`dicomnet.uids.ALL_TRANSFER_SYNTAXES`, preferring the requestor's
    order: a storage SCP stores bytes as sent, so none is better than another."""
    max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH
    max_operations_performed: int = 16
    max_operations_invoked: int = 16
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    max_presentation_contexts: int = 128
    user_identity: Callable[[UserIdentityRQ, AssociateRQ], UserIdentityDecision] | None = None
    sop_class_extended: Callable[[SOPClassExtendedNegotiation], bytes | None] | None = None
    sop_class_common_extended: Callable[[SOPClassCommonExtendedNegotiation], bool] | None = None


@dataclass(frozen=True, slots=True)
class AcceptedContext:
    """An accepted presentation context and the roles agreed for it.

    ``requestor_scu`` / ``requestor_scp``: whether the association requestor
    acts as SCU / SCP of the SOP class on it (default SCU only).
    """

    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    requestor_scu: bool = True
    requestor_scp: bool = False


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both ends agreed, from one end's point of view.

    ``max_operations_invoked``: our requests that may be outstanding at once;
    ``max_operations_performed``: the peer's requests we serve at once
    (0 = unlimited for both).
    """

    contexts: dict[int, AcceptedContext]
    peer_max_pdu_length: int
    our_max_pdu_length: int
    max_operations_invoked: int = 1
    max_operations_performed: int = 1
    peer_implementation_class_uid: str = ""
    peer_implementation_version_name: str | None = None
    user_identity_response: bytes | None = None
    sop_class_extended: dict[str, bytes] = field(default_factory=dict)
    called_ae_title: str = ""
    calling_ae_title: str = ""

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> AcceptedContext | None:
        """An accepted context for a SOP class, with that transfer syntax if given."""
        for context in self.contexts.values():
            if context.abstract_syntax == abstract_syntax and (
                transfer_syntax is None or context.transfer_syntax == transfer_syntax
            ):
                return context
        return None

    def contexts_for(self, abstract_syntax: str) -> list[AcceptedContext]:
        return [c for c in self.contexts.values() if c.abstract_syntax == abstract_syntax]


def validate_ae_title(value: str) -> str:
    """An AE title we send: 1-16 characters, no backslash or control character."""
    if not value.strip():
        raise ValueError("an AE title cannot be empty or all spaces")
    if len(value) > 16:
        raise ValueError(f"AE title {value!r} is longer than 16 characters")
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in value):
        raise ValueError(f"AE title {value!r} has a backslash or a non-printable character")
    return value


def _min_window(proposed: int, ours: int) -> int:
    """The smaller limit where 0 means unlimited."""
    if proposed == 0:
        return ours
    if ours == 0:
        return proposed
    return min(proposed, ours)


def _storage_syntaxes(proposed: Sequence[str]) -> tuple[str, ...]:
    return tuple(ts for ts in proposed if ts in ALL_TRANSFER_SYNTAXES)


def _supported(policy: AcceptorPolicy) -> dict[str, SupportedContext]:
    return {c.abstract_syntax: c for c in policy.supported_contexts}


def _context_result(
    item: PresentationContextRQ,
    supported: dict[str, SupportedContext],
    policy: AcceptorPolicy,
    seen: set[int],
) -> PresentationContextAC:
    cid = item.context_id
    if cid % 2 == 0 or not 1 <= cid <= MAX_CONTEXT_ID or cid in seen:
        return PresentationContextAC(cid, ContextResult.NO_REASON, "")
    seen.add(cid)
    abstract = item.abstract_syntax
    proposed = [ts for ts in item.transfer_syntaxes if is_valid_uid(ts)]
    if not is_valid_uid(abstract):
        return PresentationContextAC(cid, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, "")
    ours = supported.get(abstract)
    if ours is not None:
        for syntax in ours.transfer_syntaxes:
            if syntax in proposed:
                return PresentationContextAC(cid, ContextResult.ACCEPTANCE, syntax)
        return PresentationContextAC(cid, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
    if policy.accept_any_storage and _is_storage(abstract):
        acceptable = _storage_syntaxes(proposed)
        if acceptable:
            return PresentationContextAC(cid, ContextResult.ACCEPTANCE, acceptable[0])
        return PresentationContextAC(cid, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "")
    return PresentationContextAC(cid, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, "")


def _is_storage(abstract_syntax: str) -> bool:
    """A storage SOP class, or a class the standard does not know (private)."""
    return abstract_syntax in STORAGE_SOP_CLASSES or abstract_syntax not in SOP_CLASSES


def negotiate_as_acceptor(rq: AssociateRQ, policy: AcceptorPolicy) -> AssociateAC | AssociateRJ:
    """Answer an A-ASSOCIATE-RQ; the module docstring lists the rules."""
    if rq.application_context != APPLICATION_CONTEXT_NAME:
        return AssociateRJ(1, 1, 2)
    if not rq.protocol_version & 1:
        return AssociateRJ(1, 2, 2)
    if policy.require_called_ae_title and rq.called_ae_title.strip() != policy.ae_title.strip():
        return AssociateRJ(1, 1, 7)
    allowed = policy.allowed_calling_ae_titles
    if allowed is not None and rq.calling_ae_title.strip() not in allowed:
        return AssociateRJ(1, 1, 3)
    if (
        not rq.presentation_contexts
        or len(rq.presentation_contexts) > policy.max_presentation_contexts
    ):
        return AssociateRJ(1, 1, 1)
    info = rq.user_information
    identity_ac = None
    if info.user_identity is not None and policy.user_identity is not None:
        decision = policy.user_identity(info.user_identity, rq)
        if not decision.accepted:
            return AssociateRJ(1, 1, 1)
        if info.user_identity.positive_response_requested:
            identity_ac = UserIdentityAC(decision.server_response)

    supported = _supported(policy)
    seen: set[int] = set()
    results = tuple(
        _context_result(item, supported, policy, seen) for item in rq.presentation_contexts
    )
    accepted_classes = {
        item.abstract_syntax
        for item, result in zip(rq.presentation_contexts, results, strict=True)
        if result.result == ContextResult.ACCEPTANCE
    }

    roles = []
    for role in info.role_selections:
        if role.sop_class_uid not in accepted_classes:
            continue
        ours = supported.get(role.sop_class_uid, SupportedContext(role.sop_class_uid))
        roles.append(
            RoleSelection(
                role.sop_class_uid, role.scu_role and ours.scu_role, role.scp_role and ours.scp_role
            )
        )

    extended = []
    if policy.sop_class_extended is not None:
        for item in info.sop_class_extended:
            if item.sop_class_uid in accepted_classes:
                reply = policy.sop_class_extended(item)
                if reply is not None:
                    extended.append(SOPClassExtendedNegotiation(item.sop_class_uid, reply))
    if policy.sop_class_common_extended is not None:
        for common in info.sop_class_common_extended:
            if common.sop_class_uid in accepted_classes:
                policy.sop_class_common_extended(common)

    window = None
    if info.async_ops_window is not None:
        window = AsyncOpsWindow(
            _min_window(
                info.async_ops_window.max_operations_invoked, policy.max_operations_performed
            ),
            _min_window(
                info.async_ops_window.max_operations_performed, policy.max_operations_invoked
            ),
        )

    return AssociateAC(
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
        presentation_contexts=results,
        user_information=UserInformation(
            max_length=policy.max_pdu_length,
            implementation_class_uid=policy.implementation_class_uid,
            implementation_version_name=policy.implementation_version_name,
            async_ops_window=window,
            role_selections=tuple(roles),
            sop_class_extended=tuple(extended),
            user_identity_ac=identity_ac,
        ),
    )


def _agreed_contexts(rq: AssociateRQ, ac: AssociateAC) -> dict[int, AcceptedContext]:
    """Contexts accepted in the AC that the RQ proposed, with a proposed syntax."""
    proposed = {item.context_id: item for item in rq.presentation_contexts}
    proposed_roles = {r.sop_class_uid: r for r in rq.user_information.role_selections}
    answered_roles = {r.sop_class_uid: r for r in ac.user_information.role_selections}
    contexts: dict[int, AcceptedContext] = {}
    for result in ac.presentation_contexts:
        item = proposed.get(result.context_id)
        if item is None or result.result != ContextResult.ACCEPTANCE:
            continue
        if result.transfer_syntax not in item.transfer_syntaxes:
            continue  # a hostile or broken AC: treat the context as refused
        scu, scp = True, False
        asked = proposed_roles.get(item.abstract_syntax)
        answer = answered_roles.get(item.abstract_syntax)
        if asked is not None and answer is not None:
            scu = asked.scu_role and answer.scu_role
            scp = asked.scp_role and answer.scp_role
        contexts[result.context_id] = AcceptedContext(
            result.context_id, item.abstract_syntax, result.transfer_syntax, scu, scp
        )
    return contexts


def _window(rq: AssociateRQ, ac: AssociateAC) -> tuple[int, int]:
    """(requestor's invoked, requestor's performed) as agreed; (1, 1) by default."""
    if rq.user_information.async_ops_window is None or ac.user_information.async_ops_window is None:
        return 1, 1
    window = ac.user_information.async_ops_window
    return window.max_operations_invoked, window.max_operations_performed


def accepted_by_requestor(rq: AssociateRQ, ac: AssociateAC) -> Negotiated:
    """The agreement as the requestor sees it."""
    invoked, performed = _window(rq, ac)
    identity = ac.user_information.user_identity_ac
    return Negotiated(
        contexts=_agreed_contexts(rq, ac),
        peer_max_pdu_length=ac.user_information.max_length or 0,
        our_max_pdu_length=rq.user_information.max_length or 0,
        max_operations_invoked=invoked,
        max_operations_performed=performed,
        peer_implementation_class_uid=ac.user_information.implementation_class_uid,
        peer_implementation_version_name=ac.user_information.implementation_version_name,
        user_identity_response=identity.server_response if identity else None,
        sop_class_extended={
            item.sop_class_uid: item.application_info
            for item in ac.user_information.sop_class_extended
        },
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
    )


def accepted_by_acceptor(rq: AssociateRQ, ac: AssociateAC) -> Negotiated:
    """The agreement as the acceptor sees it (the window mirrored)."""
    invoked, performed = _window(rq, ac)
    return Negotiated(
        contexts=_agreed_contexts(rq, ac),
        peer_max_pdu_length=rq.user_information.max_length or 0,
        our_max_pdu_length=ac.user_information.max_length or 0,
        max_operations_invoked=performed,
        max_operations_performed=invoked,
        peer_implementation_class_uid=rq.user_information.implementation_class_uid,
        peer_implementation_version_name=rq.user_information.implementation_version_name,
        user_identity_response=None,
        sop_class_extended={
            item.sop_class_uid: item.application_info
            for item in ac.user_information.sop_class_extended
        },
        called_ae_title=rq.called_ae_title,
        calling_ae_title=rq.calling_ae_title,
    )


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
    """An A-ASSOCIATE-RQ proposing ``contexts`` with odd IDs 1, 3, 5, ... (at most 128)."""
    items = tuple(
        PresentationContextRQ(2 * index + 1, abstract, tuple(syntaxes))
        for index, (abstract, syntaxes) in enumerate(contexts)
    )
    if not items:
        raise ValueError("an association needs at least one presentation context")
    if len(items) > 128:
        raise ValueError(f"{len(items)} presentation contexts proposed; at most 128 fit")
    return AssociateRQ(
        called_ae_title=validate_ae_title(called_ae_title),
        calling_ae_title=validate_ae_title(calling_ae_title),
        presentation_contexts=items,
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
