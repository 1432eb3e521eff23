"""Access control per peer: who may associate, store, query, retrieve and commit.

Theory of operation
-------------------
A :class:`PeerTable` maps calling AE titles to :class:`PeerRule` s, read from
the ``[listen.peers]`` table of the TOML configuration::

    [listen]
    unknown-peers = "refuse"        # or "allow" (the default)

    [listen.peers.CT01]
    addresses = ["10.0.0.5", "10.0.1.0/24"]   # optional: only from there
    store = true
    query = false
    retrieve = true
    commit = true
    move-destinations = ["VIEWER"]            # "*": any configured destination

    [listen.peers."*"]                        # the rule of unknown peers, if allowed
    store = true
    query = false

Every permission of a listed peer defaults to true and its move destinations
to ``["*"]``: a peer is listed to be restricted. An unknown peer has the
``"*"`` rule when there is one, every permission otherwise, or is refused
with ``unknown_peers = "refuse"``.

:class:`AccessControl` enforces a table on a
:class:`dicomnet.net.listener.Listener` at two points:

* **the association request** (the listener's ``on_association_request``
  hook): a refused peer, an unknown one under ``refuse`` or a listed one
  from an address its rule does not name, gets A-ASSOCIATE-RJ with result 1
  (rejected-permanent), source 1 (service-user), reason 3
  (calling-AE-title-not-recognized), PS3.8 Table 9-21;
* **each operation**: the handlers of C-STORE (store), C-FIND (query),
  C-MOVE and C-GET (retrieve) and N-ACTION (commit) are wrapped. A refused
  operation is answered 0124H *Refused: Not authorized* (PS3.7 Annex C), a
  C-MOVE to a destination the peer may not name A801H *Refused: Move
  Destination unknown* (PS3.4 C.4.2.1.4), and the refused C-STORE's dataset
  is dropped as it arrives, never written. C-ECHO is always answered.

Every refusal is logged (one line: peer, AE title, operation) and counted
(:attr:`AccessControl.refused`, by operation). :meth:`AccessControl.reload`
swaps the table atomically: open associations keep running, and their next
operation is judged by the new table.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dicomnet.core.dimse import CommandField
from dicomnet.core.pdu import AssociateRJ, RejectResult, RejectSource

__all__ = [
    "CALLING_AE_NOT_RECOGNIZED",
    "NOT_AUTHORIZED",
    "AccessControl",
    "PeerRule",
    "PeerTable",
]

log = logging.getLogger("dicomnet.services.access")

NOT_AUTHORIZED = 0x0124
"""Refused: Not authorized (PS3.7 Annex C)."""
MOVE_DESTINATION_UNKNOWN = 0xA801
CALLING_AE_NOT_RECOGNIZED = AssociateRJ(RejectResult.PERMANENT, RejectSource.SERVICE_USER, 3)
"""A-ASSOCIATE-RJ (1, 1, 3)."""

OPERATIONS = {
    int(CommandField.C_STORE_RQ): "store",
    int(CommandField.C_FIND_RQ): "query",
    int(CommandField.C_MOVE_RQ): "retrieve",
    int(CommandField.C_GET_RQ): "retrieve",
    int(CommandField.N_ACTION_RQ): "commit",
}
"""The permission each request needs, by command field."""

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PeerRule:
    """What one calling AE title may do; every permission defaults to allowed."""

    store: bool = True
    query: bool = True
    retrieve: bool = True
    commit: bool = True
    move_destinations: frozenset[str] = frozenset({"*"})
    addresses: tuple[_Network, ...] = ()
    """Where it may connect from; empty for anywhere."""

    def allows(self, operation: str) -> bool:
        return bool(getattr(self, operation))

    def may_move_to(self, destination: str) -> bool:
        return "*" in self.move_destinations or destination in self.move_destinations

    def admits(self, address: str) -> bool:
        if not self.addresses:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.addresses)


ALLOW_ALL = PeerRule()

_KEYS = {"store", "query", "retrieve", "commit", "move_destinations", "addresses"}


def _rule(name: str, table: Mapping[str, Any]) -> PeerRule:
    values: dict[str, Any] = {}
    for key, value in table.items():
        option = key.replace("-", "_")
        if option not in _KEYS:
            raise ValueError(f"peer {name!r}: unknown setting {key!r}")
        if option in ("store", "query", "retrieve", "commit"):
            if not isinstance(value, bool):
                raise ValueError(f"peer {name!r}: {key} must be true or false")
            values[option] = value
        elif option == "move_destinations":
            values[option] = frozenset(_strings(name, key, value))
        else:
            try:
                values[option] = tuple(
                    ipaddress.ip_network(a, strict=False) for a in _strings(name, key, value)
                )
            except ValueError as exc:
                raise ValueError(f"peer {name!r}: {exc}") from exc
    return PeerRule(**values)


def _strings(name: str, key: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"peer {name!r}: {key} must be a list of strings")
    return [v.strip() for v in value]


@dataclass(frozen=True)
class PeerTable:
    """Rules by calling AE title, and what happens to a peer not listed."""

    peers: Mapping[str, PeerRule] = field(default_factory=dict)
    unknown: str = "allow"
    """``allow`` (with the ``"*"`` rule, or every permission) or ``refuse``."""

    @classmethod
    def parse(cls, table: Mapping[str, Any] | None, unknown: str = "allow") -> PeerTable:
        """A table from the TOML ``[listen.peers]`` mapping; ``ValueError`` if malformed."""
        if unknown not in ("allow", "refuse"):
            raise ValueError(f"unknown-peers must be allow or refuse, not {unknown!r}")
        peers = {}
        for name, rule in (table or {}).items():
            if not isinstance(rule, Mapping):
                raise ValueError(f"peer {name!r}: expected a table")
            peers[name.strip()] = _rule(name, rule)
        return cls(peers, unknown)

    def rule(self, calling_ae_title: str, address: str) -> PeerRule | None:
        """The rule of a peer, or None when it may not associate at all."""
        rule = self.peers.get(calling_ae_title.strip())
        if rule is None:
            if self.unknown == "refuse":
                return None
            return self.peers.get("*", ALLOW_ALL)
        return rule if rule.admits(address) else None


class AccessControl:
    """Enforces a :class:`PeerTable` on a listener (see the module docstring).

    Parameters
    ----------
    table : PeerTable
    on_refused : callable, optional
        Called with the operation refused (``association``, ``store``,
        ``query``, ``retrieve``, ``commit``, ``move_destination``): metrics.
    """

    def __init__(
        self, table: PeerTable, *, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self.table = table
        self.on_refused = on_refused
        self.refused: collections.Counter[str] = collections.Counter()
        self.loaded_at = time.time()

    def reload(self, table: PeerTable) -> None:
        """Use ``table`` from the next association or operation on."""
        self.table = table
        self.loaded_at = time.time()
        log.info("access rules loaded: %d peers, unknown peers %s", len(table.peers), table.unknown)

    def attach(self, listener: Any, operations: Iterable[int] | None = None) -> None:
        """Check association requests and wrap the handlers registered on ``listener``."""
        previous = listener.on_association_request
        listener.on_association_request = self._association_hook(previous)
        for command_field in operations or OPERATIONS:
            handler = listener.handlers.get(command_field)
            if handler is not None:
                listener.handlers[command_field] = self._guard(handler, OPERATIONS[command_field])
        sink = listener.dataset_sink
        if sink is not None:
            listener.dataset_sink = self._guard_sink(sink)

    # -- checks --------------------------------------------------------------------------
    def _refuse(self, operation: str, association: Any, detail: str = "") -> None:
        self.refused[operation] += 1
        log.warning(
            "refused %s%s to %r from %s",
            operation,
            f" ({detail})" if detail else "",
            str(getattr(association, "calling_ae_title", "")).strip(),
            getattr(association, "peer", "?"),
        )
        if self.on_refused is not None:
            self.on_refused(operation)

    def _rule_of(self, association: Any) -> PeerRule | None:
        return self.table.rule(
            str(getattr(association, "calling_ae_title", "")),
            str(getattr(association, "peer_host", "")),
        )

    def permits(self, association: Any, operation: str) -> bool:
        rule = self._rule_of(association)
        return rule is not None and rule.allows(operation)

    def _association_hook(self, previous: Any) -> Callable[[Any, Any], Any]:
        def check(association: Any, request: Any) -> Any:
            rule = self.table.rule(request.calling_ae_title, str(association.peer_host))
            if rule is None:
                self._refuse("association", association, f"calling {request.calling_ae_title!r}")
                return CALLING_AE_NOT_RECOGNIZED
            return previous(association, request) if previous is not None else None

        return check

    def _guard(self, handler: Callable[[Any], Any], operation: str) -> Callable[[Any], Any]:
        def guarded(request: Any) -> Any:
            association = request.association
            rule = self._rule_of(association)
            if rule is None or not rule.allows(operation):
                self._refuse(operation, association)
                return _answer(NOT_AUTHORIZED)
            destination = getattr(request.message, "move_destination", None)
            if destination is not None and not rule.may_move_to(str(destination).strip()):
                self._refuse("move_destination", association, str(destination).strip())
                return _answer(MOVE_DESTINATION_UNKNOWN)
            return handler(request)

        return guarded

    def _guard_sink(self, sink: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(association: Any, context_id: int, command: dict[int, Any]) -> Any:
            if command.get(0x00000100) == int(CommandField.C_STORE_RQ) and not self.permits(
                association, "store"
            ):
                return _Dropped()  # the handler answers 0124H; nothing reaches the disk
            return sink(association, context_id, command)

        return guarded


async def _answer(status: int) -> int:
    return status


class _Dropped:
    """A dataset sink that keeps nothing (a C-STORE refused before its data)."""

    __slots__ = ("size", "started")

    def __init__(self) -> None:
        self.size = 0
        self.started = time.monotonic()

    def write(self, fragment: Any) -> None:
        self.size += len(fragment)

    def discard(self) -> None:
        pass
