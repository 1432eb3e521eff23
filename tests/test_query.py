"""C-FIND: pending responses as an async iterator, C-CANCEL, handler failures, DCMTK findscu."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest
from pydicom.dataset import Dataset

from dicomnet.core.dimse import CommandField
from dicomnet.core.negotiation import SupportedContext
from dicomnet.core.uids import STUDY_ROOT_FIND
from dicomnet.net import client
from dicomnet.net.association import IncomingRequest, Reply
from dicomnet.net.listener import Listener

from peers import dcmtk, dcmtk_env

PATIENTS = [("DOE^JANE", "P1"), ("DOE^JOHN", "P2"), ("ROE^RICHARD", "P3")]


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def study_query(name: str = "*") -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientName = name
    query.PatientID = ""
    return query


async def find_listener(delay: float = 0.0) -> tuple[Listener, list[IncomingRequest]]:
    listener = Listener("QRSCP", supported_contexts=[SupportedContext(STUDY_ROOT_FIND)])
    seen: list[IncomingRequest] = []

    async def handle_find(request: IncomingRequest):
        seen.append(request)
        pattern = str(request.dataset.PatientName).rstrip("*")
        for name, patient_id in PATIENTS:
            if name.startswith(pattern):
                match = Dataset()
                match.QueryRetrieveLevel = "STUDY"
                match.PatientName = name
                match.PatientID = patient_id
                if delay:
                    await asyncio.sleep(delay)
                yield Reply(0xFF00, match)

    listener.handle(CommandField.C_FIND_RQ, handle_find)
    await listener.listen("127.0.0.1", 0, 16)
    return listener, seen


def test_find_yields_every_match_then_success() -> None:
    async def scenario() -> None:
        listener, seen = await find_listener()
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2.1"])]
            ) as assoc,
        ):
            responses = [r async for r in assoc.find(study_query("DOE*"), STUDY_ROOT_FIND)]
        assert [r.status for r in responses] == [0xFF00, 0xFF00, 0x0000]
        assert [str(r.identifier.PatientName) for r in responses[:2]] == ["DOE^JANE", "DOE^JOHN"]
        assert responses[-1].identifier is None
        assert len(seen) == 1

    run(scenario())


def test_leaving_the_iteration_sends_c_cancel() -> None:
    async def scenario() -> None:
        listener, seen = await find_listener(delay=0.05)
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2.1"])]
            ) as assoc,
        ):
            async with aclosing(assoc.find(study_query(), STUDY_ROOT_FIND)) as responses:
                async for response in responses:
                    assert response.status == 0xFF00
                    break
            assert seen[0].cancelled
            # the association is still usable after the cancel
            remaining = [r.status async for r in assoc.find(study_query("ROE*"), STUDY_ROOT_FIND)]
            assert remaining == [0xFF00, 0x0000]

    run(scenario())


def test_failing_find_handler_answers_a_failure_status() -> None:
    async def scenario() -> None:
        listener = Listener("QRSCP", supported_contexts=[SupportedContext(STUDY_ROOT_FIND)])

        async def broken(request: IncomingRequest):
            yield Reply(0xFF00, study_query("FIRST"))
            raise RuntimeError("index unavailable")

        listener.handle(CommandField.C_FIND_RQ, broken)
        await listener.listen("127.0.0.1", 0, 16)
        async with (
            listener,
            client.connect(
                "127.0.0.1", listener.port, contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2.1"])]
            ) as assoc,
        ):
            statuses = [r.status async for r in assoc.find(study_query(), STUDY_ROOT_FIND)]
            assert statuses == [0xFF00, 0xC000]
            assert (await assoc.echo()).status == 0

    run(scenario())


@pytest.mark.interop
def test_dcmtk_findscu_against_our_listener() -> None:
    async def scenario() -> str:
        listener, _ = await find_listener()
        async with listener:
            process = await asyncio.create_subprocess_exec(
                dcmtk("findscu"),
                "-v",
                "-S",
                "-aec",
                "QRSCP",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "PatientName=DOE*",
                "-k",
                "PatientID",
                "127.0.0.1",
                str(listener.port),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=dcmtk_env(),
            )
            output, _ = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, output.decode(errors="replace")
            return output.decode(errors="replace")

    output = run(scenario())
    assert output.count("Find Response:") == 2  # the pending ones
    assert "Received Final Find Response (Success)" in output
    assert "DOE^JANE" in output and "DOE^JOHN" in output and "ROE^RICHARD" not in output
