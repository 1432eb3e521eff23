"""Associations between a dicomnet listener and a dicomnet client over loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

import dicomnet
from dicomnet.core import dimse
from dicomnet.core.pdu import AssociateRJ, UserIdentityRQ
from dicomnet.core.uids import VERIFICATION_SOP_CLASS
from dicomnet.net import client
from dicomnet.net.addresses import primary_address
from dicomnet.net.listener import IPType, Listener, ListenerLimits


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def started(
    listener: Listener, host: str = "127.0.0.1", ip_type: IPType = IPType.IPV4
) -> int:
    await listener.listen(host, 0, 16, ip_type)
    return listener.port


@pytest.mark.parametrize(
    ("host", "ip_type"),
    [("127.0.0.1", IPType.IPV4), ("::1", IPType.IPV6)],
)
def test_echo_over_ipv4_and_ipv6(host: str, ip_type: IPType) -> None:
    async def scenario() -> None:
        async with Listener("SCP") as listener:
            port = await started(listener, host, ip_type)
            async with client.connect(host, port, called_ae_title="SCP") as assoc:
                rsp = await assoc.echo()
                assert isinstance(rsp, dimse.CEchoRSP)
                assert rsp.status == 0x0000
                assert listener.association_count == 1
                assert listener.client_count == 1
            # released: the listener forgets the association
            for _ in range(100):
                if listener.association_count == 0:
                    break
                await asyncio.sleep(0.01)
            assert listener.association_count == 0

    run(scenario())


def test_dual_stack_socket_serves_both_families() -> None:
    async def scenario() -> None:
        async with Listener("SCP") as listener:
            await listener.listen("*", 0, 16, IPType.IPV4_OR_IPV6)
            assert len(listener.sockets) == 1
            sock = listener.sockets[0]
            assert sock.family == socket.AF_INET6
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
            for host in ("127.0.0.1", "::1"):
                async with client.connect(host, listener.port) as assoc:
                    assert (await assoc.echo()).status == 0

    run(scenario())


def test_bind_rules_of_the_reference() -> None:
    async def scenario() -> None:
        async with Listener() as every:
            await every.listen("*", 0, 5)  # no ip_type: IPv4
            assert every.sockets[0].family == socket.AF_INET
            assert every.addresses[0][0] == "0.0.0.0"
            assert every.port > 0
        async with Listener() as own:
            await own.listen("", 0, 5, IPType.IPV4)
            # the primary address, not the host name resolved (tests/test_listen_address.py)
            assert own.addresses[0][0] == primary_address(socket.AF_INET)
        async with Listener() as v6:
            await v6.listen("*", 0, 5, IPType.IPV6)
            sock = v6.sockets[0]
            assert sock.family == socket.AF_INET6
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1

    run(scenario())


def test_association_cap_rejects_transient_local_limit() -> None:
    async def scenario() -> None:
        limits = ListenerLimits(max_associations=2)
        async with Listener("SCP", limits=limits) as listener:
            port = await started(listener)
            first = await client.connect("127.0.0.1", port)
            second = await client.connect("127.0.0.1", port)
            with pytest.raises(dicomnet.AssociationRejected) as info:
                await client.connect("127.0.0.1", port)
            assert (info.value.result, info.value.source, info.value.reason) == (2, 3, 2)
            # established associations are unaffected
            assert (await first.echo()).status == 0
            await first.release()
            third = await client.connect("127.0.0.1", port)
            assert (await third.echo()).status == 0
            await second.release()
            await third.release()

    run(scenario())


def test_called_ae_title_checked_when_required() -> None:
    async def scenario() -> None:
        async with Listener("OURS", require_called_ae_title=True) as listener:
            port = await started(listener)
            with pytest.raises(dicomnet.AssociationRejected) as info:
                await client.connect("127.0.0.1", port, called_ae_title="SOMEONE")
            assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)
            async with client.connect("127.0.0.1", port, called_ae_title="  OURS ") as assoc:
                assert (await assoc.echo()).status == 0

    run(scenario())


def test_calling_ae_allow_list() -> None:
    async def scenario() -> None:
        async with Listener("SCP", allowed_calling_ae_titles=["MODALITY"]) as listener:
            port = await started(listener)
            with pytest.raises(dicomnet.AssociationRejected) as info:
                await client.connect("127.0.0.1", port, calling_ae_title="INTRUDER")
            assert (info.value.source, info.value.reason) == (1, 3)
            async with client.connect("127.0.0.1", port, calling_ae_title="MODALITY") as assoc:
                assert (await assoc.echo()).status == 0

    run(scenario())


def test_request_hook_sees_client_count_and_can_reject() -> None:
    seen: list[tuple[str, int]] = []

    async def scenario() -> None:
        async with Listener("SCP") as listener:

            def hook(association, rq):
                seen.append((rq.calling_ae_title, listener.get_client_count()))
                if rq.calling_ae_title == "BLOCKED":
                    return AssociateRJ(1, 1, 3)
                return None

            listener.on_association_request = hook
            port = await started(listener)
            with pytest.raises(dicomnet.AssociationRejected):
                await client.connect("127.0.0.1", port, calling_ae_title="BLOCKED")
            async with client.connect("127.0.0.1", port, calling_ae_title="FINE") as assoc:
                assert (await assoc.echo()).status == 0

    run(scenario())
    assert seen == [("BLOCKED", 1), ("FINE", 1)]


def test_handler_exception_fails_the_request_not_the_server() -> None:
    async def scenario() -> None:
        async with Listener("SCP") as listener:
            calls = 0

            @listener.on_c_echo
            async def broken(request):
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise RuntimeError("handler bug")
                return 0x0000

            port = await started(listener)
            async with client.connect("127.0.0.1", port) as assoc:
                first = await assoc.echo()
                assert first.status != 0x0000
                assert (await assoc.echo()).status == 0x0000
            async with client.connect("127.0.0.1", port) as assoc:
                assert (await assoc.echo()).status == 0x0000

    run(scenario())


def test_abort_from_the_client_frees_the_slot() -> None:
    async def scenario() -> None:
        async with Listener("SCP", limits=ListenerLimits(max_associations=1)) as listener:
            port = await started(listener)
            assoc = await client.connect("127.0.0.1", port)
            await assoc.abort()
            with pytest.raises(dicomnet.ConnectionClosed):
                await assoc.echo()
            for _ in range(200):
                if listener.association_count == 0:
                    break
                await asyncio.sleep(0.01)
            async with client.connect("127.0.0.1", port) as again:
                assert (await again.echo()).status == 0

    run(scenario())


def test_block_that_raises_aborts_the_association() -> None:
    async def scenario() -> None:
        async with Listener("SCP") as listener:
            port = await started(listener)
            aborted: list[tuple[int, int]] = []
            with pytest.raises(KeyError):
                async with client.connect("127.0.0.1", port) as assoc:
                    assoc.on_receive_abort = lambda s, r: aborted.append((s, r))
                    raise KeyError("user code failed")
            assert assoc.finished.done()

    run(scenario())


def test_connection_refused_is_a_clear_error() -> None:
    from peers import free_port

    async def scenario() -> None:
        with pytest.raises(dicomnet.ConnectionClosed, match="cannot connect"):
            await client.connect("127.0.0.1", free_port())

    run(scenario())


def test_pipelined_echoes_within_the_window() -> None:
    async def scenario() -> None:
        limits = ListenerLimits(max_operations_performed=8)
        async with Listener("SCP", limits=limits) as listener:
            active = 0
            peak = 0

            @listener.on_c_echo
            async def slow(request):
                nonlocal active, peak
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.02)
                active -= 1
                return 0

            port = await started(listener)
            async with client.connect(
                "127.0.0.1", port, max_operations_invoked=8, max_operations_performed=1
            ) as assoc:
                assert assoc.negotiated.max_operations_invoked == 8
                results = await asyncio.gather(*(assoc.echo() for _ in range(20)))
                assert [r.status for r in results] == [0] * 20
                ids = {r.message_id_being_responded_to for r in results}
                assert len(ids) == 20
            assert 2 <= peak <= 8

    run(scenario())


def test_user_identity_hook_rejects_and_accepts() -> None:
    from dicomnet.core.negotiation import UserIdentityDecision

    async def scenario() -> None:
        async with Listener("SCP") as listener:
            listener.policy = listener.policy.__class__(
                **{
                    **{
                        f: getattr(listener.policy, f) for f in listener.policy.__dataclass_fields__
                    },
                    "user_identity": lambda identity, rq: UserIdentityDecision(
                        identity.primary_field == b"alice", b"token-ok"
                    ),
                }
            )
            port = await started(listener)
            bad = UserIdentityRQ(2, True, b"mallory", b"pw")
            with pytest.raises(dicomnet.AssociationRejected):
                await client.connect("127.0.0.1", port, user_identity=bad)
            good = UserIdentityRQ(2, True, b"alice", b"pw")
            async with client.connect("127.0.0.1", port, user_identity=good) as assoc:
                assert (await assoc.echo()).status == 0

    run(scenario())


def test_unsupported_context_is_refused_per_context() -> None:
    async def scenario() -> None:
        async with Listener("SCP") as listener:
            port = await started(listener)
            contexts = [
                (VERIFICATION_SOP_CLASS, ["1.2.840.10008.1.2"]),
                ("1.2.3.4.5.6", ["1.2.840.10008.1.2"]),
            ]
            async with client.connect("127.0.0.1", port, contexts=contexts) as assoc:
                accepted = {c.abstract_syntax for c in assoc.negotiated.contexts.values()}
                assert accepted == {VERIFICATION_SOP_CLASS}
                results = {c.context_id: c.result for c in assoc.accept.presentation_contexts}
                assert results == {1: 0, 3: 3}

    run(scenario())


def test_a_full_window_of_fast_requests_is_never_mistaken_for_an_overrun() -> None:
    """300 requests through a window of 4 stay on one association, handlers
    answering after work in a thread as the storage handler does."""

    async def scenario() -> None:
        limits = ListenerLimits(max_operations_performed=4)
        async with Listener("SCP", limits=limits) as listener:

            @listener.on_c_echo
            async def threaded(request):
                # like the storage handler: the answer comes after work in a thread
                await asyncio.get_running_loop().run_in_executor(None, lambda: None)
                return 0

            port = await started(listener)
            async with client.connect("127.0.0.1", port, max_operations_invoked=4) as assoc:
                assert assoc.negotiated.max_operations_invoked == 4
                results = await asyncio.gather(*(assoc.echo() for _ in range(300)))
                assert {r.status for r in results} == {0}
                assert not assoc.finished.done()

    run(scenario())
