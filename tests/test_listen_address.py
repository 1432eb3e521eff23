"""LEADTOOLS ``Listen`` address rules: ``""``, ``"*"``, explicit addresses and ``ip_type``.

``listen("")`` binds the primary non-loopback address, the one the default
route leaves from, found without sending anything; loopback only when no
other address exists. Proven in network namespaces the test creates (the
suite runs as root): a veth interface with and without a default route, and
loopback alone; and with injected interface lists. An explicit address of a
family ``ip_type`` excludes is a clear error; ``"*"`` with IPV4_OR_IPV6 falls
back to IPv4 where the host has no IPv6; ``port`` before ``listen()`` says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from dicomnet.net.addresses import BindError, bind_plan, primary_address
from dicomnet.net.listener import IPType, Listener

AF4, AF6 = socket.AF_INET, socket.AF_INET6


# -- the address choice, injected -----------------------------------------------------------
def test_primary_address_prefers_the_default_route() -> None:
    chosen = primary_address(AF4, route=lambda f: "10.1.2.3", interfaces=lambda f: ["10.9.9.9"])
    assert chosen == "10.1.2.3"


def test_primary_address_without_a_route_takes_an_interface() -> None:
    chosen = primary_address(AF4, route=lambda f: None, interfaces=lambda f: ["10.9.9.9"])
    assert chosen == "10.9.9.9"


def test_primary_address_falls_back_to_loopback() -> None:
    assert primary_address(AF4, route=lambda f: None, interfaces=lambda f: []) == "127.0.0.1"
    assert primary_address(AF6, route=lambda f: None, interfaces=lambda f: []) == "::1"


def plan(host: str, ip_type: IPType, ipv6: bool = True) -> list[tuple[int, str, bool]]:
    return bind_plan(host, ip_type, has_ipv6=lambda: ipv6, primary=lambda f: f"primary-{f.name}")


def test_bind_plan_follows_leadtools() -> None:
    assert plan("*", IPType.IPV4) == [(AF4, "0.0.0.0", False)]
    assert plan("*", IPType.IPV6) == [(AF6, "::", False)]
    assert plan("*", IPType.IPV4_OR_IPV6) == [(AF6, "::", True)]
    assert plan("", IPType.IPV4) == [(AF4, "primary-AF_INET", False)]
    assert plan("", IPType.IPV4_OR_IPV6) == [
        (AF4, "primary-AF_INET", False),
        (AF6, "primary-AF_INET6", False),
    ]
    assert plan("10.0.0.1", IPType.IPV4) == [(AF4, "10.0.0.1", False)]
    assert plan("::1", IPType.IPV6) == [(AF6, "::1", False)]


def test_star_with_both_families_falls_back_to_ipv4_without_ipv6() -> None:
    assert plan("*", IPType.IPV4_OR_IPV6, ipv6=False) == [(AF4, "0.0.0.0", False)]
    assert plan("", IPType.IPV4_OR_IPV6, ipv6=False) == [(AF4, "primary-AF_INET", False)]
    with pytest.raises(BindError, match="no IPv6"):
        plan("*", IPType.IPV6, ipv6=False)


@pytest.mark.parametrize(
    ("host", "ip_type", "message"),
    [
        ("::", IPType.IPV4, "IPv6 address but ip_type allows IPv4 only"),
        ("::1", IPType.IPV4, "IPv6 address"),
        ("127.0.0.1", IPType.IPV6, "IPv4 address but ip_type allows IPv6 only"),
    ],
)
def test_an_explicit_address_of_the_wrong_family_is_a_clear_error(
    host: str, ip_type: IPType, message: str
) -> None:
    with pytest.raises(BindError, match=message):
        plan(host, ip_type)

    async def scenario() -> None:
        listener = Listener("SCP")
        with pytest.raises(BindError, match=message):
            await listener.listen(host, 0, 8, ip_type)
        assert listener.sockets == []

    asyncio.run(scenario())


def test_port_before_listen_is_a_clear_error() -> None:
    listener = Listener("SCP")
    with pytest.raises(RuntimeError, match="not listening"):
        listener.port  # noqa: B018


# -- in network namespaces made by the test -------------------------------------------------
PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from dicomnet.net.listener import IPType, Listener

    async def main():
        listener = Listener("SCP")
        await listener.listen(sys.argv[1], 0, 8, IPType[sys.argv[2]])
        print(json.dumps([[s.family.name, s.getsockname()[0]] for s in listener.sockets]))
        await listener.close()

    asyncio.run(main())
    """
)


def in_namespace(setup: str, host: str, ip_type: str) -> list[list[str]]:
    """Run the probe in a new network namespace prepared by ``setup`` (shell)."""
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (the suite runs as root)")
    probe = f"exec {sys.executable} -c \"$PROBE\" '{host}' {ip_type}"
    script = f"set -e; ip link set lo up; {setup}; {probe}"
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        env={**os.environ, "PROBE": PROBE},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


VETH = (
    "ip link add v0 type veth peer name v1; ip addr add 10.99.0.7/24 dev v0; "
    "ip link set v0 up; ip link set v1 up"
)


def test_empty_address_binds_the_default_routes_address() -> None:
    bound = in_namespace(f"{VETH}; ip route add default via 10.99.0.1 dev v0", "", "IPV4")
    assert bound == [["AF_INET", "10.99.0.7"]]


def test_empty_address_without_a_default_route_binds_the_interface() -> None:
    assert in_namespace(VETH, "", "IPV4") == [["AF_INET", "10.99.0.7"]]


def test_empty_address_with_loopback_alone_binds_loopback() -> None:
    assert in_namespace("true", "", "IPV4") == [["AF_INET", "127.0.0.1"]]


def test_star_with_both_families_binds_ipv4_where_ipv6_is_disabled() -> None:
    no_ipv6 = (
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; "
        "sysctl -qw net.ipv6.conf.default.disable_ipv6=1; "
        "sysctl -qw net.ipv6.conf.lo.disable_ipv6=1"
    )
    assert in_namespace(no_ipv6, "*", "IPV4_OR_IPV6") == [["AF_INET", "0.0.0.0"]]
    assert in_namespace("true", "*", "IPV4_OR_IPV6") == [["AF_INET6", "::"]]
