"""This machine's primary address: what LEADTOOLS' ``Listen("")`` binds.

Theory of operation
-------------------
LEADTOOLS documents an empty host address as "the local computer's
address". Resolving the host name gives loopback on Debian and in most
containers, which makes a listener nobody else can reach. The primary
address is instead the one the default route leaves from:

1. ask the kernel's routing table, without sending anything: a UDP socket
   *connected* (no datagram is sent by ``connect`` on UDP) to an address of
   the documentation ranges (RFC 5737, RFC 3849) takes the source address the
   kernel would use;
2. failing that (no default route), the first address of an interface that
   is up and not loopback;
3. failing that, loopback, which always exists.

Both steps can be injected, so the choice is testable without a network.

:func:`bind_plan` turns LEADTOOLS' ``(hostAddress, ipType)`` into the
sockets to bind: ``"*"`` every interface (one dual-stack socket for
IPV4_OR_IPV6, or IPv4 alone where the host has no IPv6), ``""`` the primary
address of each family asked for, anything else that address, which must be
of a family ``ip_type`` allows.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable

__all__ = [
    "BindError",
    "bind_plan",
    "interface_addresses",
    "ipv6_available",
    "primary_address",
    "routed_address",
]

_PROBE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
"""Documentation addresses (RFC 5737, RFC 3849): routed like any other, never reached."""

_LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}

_SIOCGIFADDR = 0x8915
"""Linux ioctl: the IPv4 address of an interface (netdevice(7))."""


def routed_address(family: socket.AddressFamily) -> str | None:
    """The source address of the default route, or None without one (sends nothing)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((_PROBE[family], 9))
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return address if _usable(address) else None


def _ipv4_of(name: str) -> str | None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(
                sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15])
            )
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def _ipv6_addresses() -> Iterable[str]:
    """Global IPv6 addresses from /proc/net/if_inet6 (Linux)."""
    with contextlib.suppress(OSError), open("/proc/net/if_inet6", encoding="ascii") as table:
        for line in table:
            fields = line.split()
            if len(fields) >= 6 and fields[3] == "00":  # scope global
                yield str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))


def interface_addresses(family: socket.AddressFamily) -> list[str]:
    """Addresses of this machine's interfaces that are up, loopback excluded (Linux)."""
    if family == socket.AF_INET6:
        return [a for a in _ipv6_addresses() if _usable(a)]
    if not hasattr(socket, "if_nameindex") or not os.path.exists("/proc/net/dev"):
        return []
    found = []
    for _, name in socket.if_nameindex():
        address = _ipv4_of(name)
        if address is not None and _usable(address):
            found.append(address)
    return found


def _usable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def primary_address(
    family: socket.AddressFamily = socket.AF_INET,
    *,
    route: Callable[[socket.AddressFamily], str | None] = routed_address,
    interfaces: Callable[[socket.AddressFamily], list[str]] = interface_addresses,
) -> str:
    """This machine's primary address of ``family`` (see the module docstring).

    Parameters
    ----------
    family : AF_INET or AF_INET6
    route, interfaces : callable, optional
        Where the default route's source address and the interfaces'
        addresses come from; injected by tests.
    """
    address = route(family)
    if address is not None:
        return address
    for candidate in interfaces(family):
        return candidate
    return _LOOPBACK[family]


class BindError(ValueError):
    """The address and the IP type asked for cannot be served together (a local error)."""


IPV4, IPV6 = 1, 2
"""The bits of LEADTOOLS' ``DicomNetIpTypeFlags`` (:class:`dicomnet.net.listener.IPType`)."""


def ipv6_available() -> bool:
    """Whether this host can serve IPv6: an IPv6 loopback socket can be bound."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _family_of(address: str) -> socket.AddressFamily:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return socket.AF_INET6 if ":" in address else socket.AF_INET  # a host name
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def bind_plan(
    host_address: str | None,
    ip_type: int,
    *,
    has_ipv6: Callable[[], bool] = ipv6_available,
    primary: Callable[[socket.AddressFamily], str] = primary_address,
) -> list[tuple[socket.AddressFamily, str, bool]]:
    """The sockets to bind, as ``(family, address, dual_stack)``.

    Raises
    ------
    BindError
        An explicit address of a family ``ip_type`` excludes (``"::"`` with
        IPV4, ``"127.0.0.1"`` with IPV6), or IPV6 alone on a host without IPv6.
    """
    want4, want6 = bool(ip_type & IPV4), bool(ip_type & IPV6)
    if not (want4 or want6):
        raise BindError(f"ip_type {ip_type!r} names no address family")
    if want6 and not want4 and not has_ipv6():
        raise BindError("ip_type is IPV6 but this host has no IPv6")
    if host_address == "*":
        if want6 and has_ipv6():
            return [(socket.AF_INET6, "::", want4)]
        return [(socket.AF_INET, "0.0.0.0", False)]
    if not host_address:
        plan = []
        if want4:
            plan.append((socket.AF_INET, primary(socket.AF_INET), False))
        if want6 and has_ipv6():
            plan.append((socket.AF_INET6, primary(socket.AF_INET6), False))
        return plan
    family = _family_of(host_address)
    if family == socket.AF_INET6 and not want6:
        raise BindError(f"{host_address!r} is an IPv6 address but ip_type allows IPv4 only")
    if family == socket.AF_INET and not want4:
        raise BindError(f"{host_address!r} is an IPv4 address but ip_type allows IPv6 only")
    return [(family, host_address, family == socket.AF_INET6 and want4)]
