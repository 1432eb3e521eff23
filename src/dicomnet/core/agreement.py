"""The agreement both ends derive from an A-ASSOCIATE-RQ and its AC, and the request itself.

Theory of operation
-------------------
Pure functions over the values of :mod:`dicomnet.core.pdu`; no I/O, no clock.
The requestor builds its proposal with :func:`build_request`. Once the AC is
known, both ends derive the same agreement, a :class:`Negotiated`, from the
two PDUs alone, each from its own point of view
(:func:`accepted_by_requestor`, :func:`accepted_by_acceptor`). How the
acceptor chooses its answer is :mod:`dicomnet.core.negotiation`.

**Roles** (PS3.7 D.3.3.4). The roles in both PDUs are the requestor's.
Without a role selection item the requestor is SCU and the acceptor SCP; an
answer of 1 to a role that was not proposed is ignored.

**Asynchronous operations window** (PS3.7 D.3.3.3). Both PDUs state the
window from the requestor's side: *invoked* is how many requests the
requestor may have outstanding, *performed* how many of the acceptor's it
will perform at once; 0 means unlimited, and without the item both are 1.
:class:`Negotiated` restates the window from its owner's point of view.

**Extended negotiation and user identity** (PS3.7 D.3.3.5-D.3.3.7). The
agreement keeps the acceptor's extended answers for SOP classes that were
both proposed and accepted, the requestor's common extended items for
accepted classes, and the user identity with the acceptor's response.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from dicomnet.core.pdu import (
    DEFAULT_MAX_PDU_LENGTH,
    AssociateAC,
    AssociateRQ,
    AsyncOpsWindow,
    ContextResult,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
    UserInformation,
)
from dicomnet.core.uids import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    is_valid_uid,
)

__all__ = [
    "MAX_CONTEXT_ID",
    "MAX_PRESENTATION_CONTEXTS",
    "MIN_PEER_PDU_LENGTH",
    "AcceptedContext",
    "Negotiated",
    "RoleName",
    "accepted_by_acceptor",
    "accepted_by_requestor",
    "build_request",
    "printable_ae_title",
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

RoleName = Literal["scu", "scp"]
"""A role we want to play on a context, for :meth:`Negotiated.context_for`."""


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


def printable_ae_title(value: str) -> str:
    """An AE title as received, fit for a log line: control characters escaped.

    The codecs strip the padding (trailing spaces or NULs, PS3.5 6.2, as DCMTK
    does) when they decode; a peer may still send other characters the AE
    VR forbids, which must not reach a log or a terminal raw.
    """
    if all(0x20 <= ord(ch) < 0x7F for ch in value):
        return value
    return "".join(ch if 0x20 <= ord(ch) < 0x7F else f"\\x{ord(ch):02x}" for ch in value)


def _check_uids(values: Iterable[str], what: str) -> tuple[str, ...]:
    checked = tuple(str(value) for value in values)
    for value in checked:
        if not is_valid_uid(value):
            raise ValueError(f"{what} {value!r} is not a valid UID")
    return checked


def _check_range(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} must be in {low}..{high}, not {value}")


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


def _min_window(proposed: int, ours: int) -> int:
    """The smaller of two window limits where 0 means unlimited (PS3.7 D.3.3.3)."""
    if proposed == 0:
        return ours
    if ours == 0:
        return proposed
    return min(proposed, ours)


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
