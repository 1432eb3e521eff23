"""dicomnet's SCU against dicomnet.testing.MisbehavingSCP: every failure is typed.

Each test makes the simulated SCP misbehave one way and asserts what the
client sees: the right result, or the DicomNetError subclass that names the
failure, within the configured timeout, never a hang or a stray exception.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicomnet.core.pdu import AssociateRJ
from dicomnet.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionClosed,
    DicomNetError,
    RequestTimeout,
)
from dicomnet.net import client
from dicomnet.net.client import AssociationTimeouts
from dicomnet.net.requests import RequestTimeouts
from dicomnet.testing import Behaviour, MisbehavingSCP

VERIFICATION = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLICIT = "1.2.840.10008.1.2"
QUICK = RequestTimeouts(send=2.0, first_response=1.0, between_responses=1.0)


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(scp: MisbehavingSCP, **options: Any) -> Any:
    return client.connect(
        "127.0.0.1",
        scp.port,
        contexts=[(VERIFICATION, [IMPLICIT]), (FIND, [IMPLICIT])],
        timeouts=QUICK,
        association_timeouts=AssociationTimeouts(connect=5, release=1, artim=1),
        **options,
    )


def query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "DOE^*"
    ds.StudyInstanceUID = ""
    return ds


def test_a_well_behaved_simulator_answers() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP() as scp, connect(scp) as assoc:
            assert (await assoc.echo()).status == 0
        assert scp.requests and scp.requests[0][0x00000100] == 0x0030

    run(scenario())


def test_a_response_later_than_the_timeout_is_a_request_timeout() -> None:
    async def scenario() -> float:
        async with MisbehavingSCP(Behaviour(delay=5)) as scp:
            assoc = await connect(scp)
            started = time.monotonic()
            with pytest.raises(RequestTimeout):
                await assoc.echo()
            elapsed = time.monotonic() - started
            await assoc.abort()
            return elapsed

    assert run(scenario()) < 4  # the 1 s first-response timer fired, not the 5 s delay


def test_an_scp_that_never_responds_is_a_request_timeout() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(never_respond=True)) as scp:
            assoc = await connect(scp)
            with pytest.raises(RequestTimeout):
                await assoc.echo()
            await assoc.abort()

    run(scenario())


def test_a_flood_of_pending_responses_arrives_whole() -> None:
    async def scenario() -> list[int]:
        async with MisbehavingSCP(Behaviour(pending=5000)) as scp, connect(scp) as assoc:
            return [int(r.status) async for r in assoc.find(query(), FIND)]

    statuses = run(scenario())
    assert len(statuses) == 5001 and statuses[-1] == 0 and set(statuses[:-1]) == {0xFF00}


def test_two_byte_pdvs_each_in_its_own_pdu_are_reassembled() -> None:
    async def scenario() -> list[int]:
        behaviour = Behaviour(pending=3, pdv_size=2, pdv_per_pdu=True)
        async with MisbehavingSCP(behaviour) as scp, connect(scp) as assoc:
            return [int(r.status) async for r in assoc.find(query(), FIND)]

    assert run(scenario()) == [0xFF00] * 3 + [0]


def test_odd_pdv_splits_abort_the_association() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(pdv_size=7)) as scp:
            assoc = await connect(scp)
            with pytest.raises((AssociationAborted, ConnectionClosed)):
                await assoc.echo()

    run(scenario())


@pytest.mark.parametrize("error", [-3, 5])
def test_pdu_lengths_that_lie_end_in_a_typed_error(error: int) -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(length_error=error)) as scp:
            assoc = await connect(scp)
            with pytest.raises(DicomNetError):  # aborted, closed or timed out: never a hang
                await assoc.echo()
            await assoc.abort()

    run(scenario())


def test_a_connection_cut_in_the_middle_of_a_pdu_is_connection_closed() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(pending=3, cut_after=300)) as scp:
            assoc = await connect(scp)
            with pytest.raises(ConnectionClosed):
                async for _ in assoc.find(query(), FIND):
                    pass

    run(scenario())


def test_an_abort_instead_of_an_answer_is_association_aborted() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(abort_after_requests=1)) as scp:
            assoc = await connect(scp)
            assert (await assoc.echo()).status == 0
            with pytest.raises(AssociationAborted):
                await assoc.echo()

    run(scenario())


def test_an_scp_that_never_closes_is_aborted_after_the_release_timeout() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(never_close=True)) as scp:
            assoc = await connect(scp)
            assert (await assoc.echo()).status == 0
            with pytest.raises(RequestTimeout):
                await assoc.release()
            assert assoc.protocol is not None
            await asyncio.wait_for(assoc.protocol.closed, 3)  # ARTIM (1 s) closed it

    run(scenario())


def test_a_rejection_is_association_rejected() -> None:
    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(reject=AssociateRJ(1, 1, 3))) as scp:
            with pytest.raises(AssociationRejected) as caught:
                await connect(scp)
            assert "calling AE title not recognized" in str(caught.value)

    run(scenario())


def test_an_scp_vanishing_mid_dataset_is_connection_closed() -> None:
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    from dicomnet.dataset.encoding import encode_dataset

    from factory import ct_dataset

    ds = ct_dataset(0, pixels=1024)  # 2 MB

    async def scenario() -> None:
        async with MisbehavingSCP(Behaviour(vanish_after=256 << 10)) as scp:
            assoc = await client.connect(
                "127.0.0.1",
                scp.port,
                contexts=[(CTImageStorage, [ExplicitVRLittleEndian])],
                timeouts=QUICK,
            )
            with pytest.raises(ConnectionClosed):
                await assoc.store(
                    encode_dataset(ds, ExplicitVRLittleEndian),
                    sop_class_uid=CTImageStorage,
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    transfer_syntax=ExplicitVRLittleEndian,
                )
            assert assoc.protocol is not None
            await asyncio.wait_for(assoc.protocol.closed, 3)

    run(scenario())


def test_a_caller_cancelled_mid_request_does_not_wedge_the_association() -> None:
    async def scenario() -> int:
        async with MisbehavingSCP(Behaviour(delay=0.5)) as scp, connect(scp) as assoc:
            first = asyncio.ensure_future(assoc.echo())
            await asyncio.sleep(0.1)  # sent, its response not yet back
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            # The window (one request) frees when the cancelled one's response arrives.
            return int((await asyncio.wait_for(assoc.echo(), 5)).status)

    assert run(scenario()) == 0


def _response(field: int = 0x8030, answering: int = 1) -> bytes:
    from dicomnet.testing import raw

    return raw.command(
        {
            0x00000002: VERIFICATION,
            0x00000100: field,
            0x00000120: answering,
            0x00000800: 0x0101,
            0x00000900: 0,
        }
    )


def _hostile_answers() -> dict[str, bytes]:
    from dicomnet.testing import raw

    ac_body = bytes(4) + b"ANY-SCP".ljust(16) + b"SCU".ljust(16) + bytes(32)
    return {
        "unknown PDU type": raw.pdu(0x09, b"\0\0\0\0"),
        "AC with an item past its end": raw.pdu(
            0x02, ac_body + raw.item(0x10, b"1.2.840.10008.3.1.1.1", length=900)
        ),
        "AC of length 0": raw.pdu(0x02, b""),
        "RJ of length 2": raw.pdu(0x03, b"\0\0"),
        "P-DATA before any AC": raw.p_data(raw.pdv(1, 3, _response())),
        "AC declaring 4 GiB": raw.pdu(0x02, ac_body, length=0xFFFFFFFF),
    }


def _hostile_responses() -> dict[str, bytes]:
    from dicomnet.testing import raw

    return {
        "response on context 99": raw.p_data(raw.pdv(99, 3, _response())),
        "PDV length past its PDU": raw.p_data(raw.pdv(1, 3, _response(), length=5000)),
        "odd fragment": raw.p_data(raw.pdv(1, 1, _response()[:7]), raw.pdv(1, 3, _response()[7:])),
        "P-DATA declaring 4 GiB": raw.pdu(0x04, bytes(10), length=0xFFFFFFFF),
        "empty P-DATA": raw.p_data(),
        "second AC": raw.pdu(0x02, bytes(68)),
        "garbage command": raw.p_data(raw.pdv(1, 3, b"\xff" * 20)),
    }


@pytest.mark.parametrize("case", sorted(_hostile_answers()))
def test_a_hostile_answer_to_the_request_is_a_typed_error(case: str) -> None:
    async def scenario() -> None:
        behaviour = Behaviour(answer_with=_hostile_answers()[case])
        async with MisbehavingSCP(behaviour) as scp:
            with pytest.raises((AssociationAborted, AssociationRejected, ConnectionClosed)):
                await connect(scp)

    run(scenario())


@pytest.mark.parametrize("case", sorted(_hostile_responses()))
def test_a_hostile_response_aborts_with_a_typed_error(case: str) -> None:
    async def scenario() -> None:
        behaviour = Behaviour(respond_with=_hostile_responses()[case])
        async with MisbehavingSCP(behaviour) as scp:
            assoc = await connect(scp)
            with pytest.raises((AssociationAborted, ConnectionClosed)):
                await assoc.echo()
            assert assoc.protocol is not None
            await asyncio.wait_for(assoc.protocol.closed, 3)

    run(scenario())


def test_a_response_to_another_message_is_ignored_until_the_timeout() -> None:
    async def scenario() -> None:
        behaviour = Behaviour(respond_with=_response_pdu(answering=999))
        async with MisbehavingSCP(behaviour) as scp:
            assoc = await connect(scp)
            with pytest.raises(RequestTimeout):
                await assoc.echo()
            await assoc.abort()

    run(scenario())


def _response_pdu(answering: int) -> bytes:
    from dicomnet.testing import raw

    return raw.p_data(raw.pdv(1, 3, _response(answering=answering)))
