"""C-FIND, C-MOVE and C-GET interop: DCMTK movescu/getscu/dcmqrscp and pynetdicom.

Every retrieve compares the dataset bytes that arrived with the ones stored.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomnet.core.dimse import CommandField
from dicomnet.core.uids import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from dicomnet.net import client
from dicomnet.net.association import IncomingRequest
from dicomnet.net.listener import Listener
from dicomnet.net.retrieve import MoveDestination, get_contexts
from dicomnet.services.storage import FolderStorage

from factory import dataset_bytes, make_study
from peers import dcmqrscp, dcmtk, dcmtk_env, free_port

pytestmark = pytest.mark.interop

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def run(coro, timeout: float = 120.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def by_instance_uid(folder: Path) -> dict[str, bytes]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.name.startswith(".") and path.suffix != ".dat":
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = dataset_bytes(path)
    return found


def expected(paths: list[Path]) -> dict[str, bytes]:
    return {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): dataset_bytes(p) for p in paths
    }


def study_identifier(study: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    return identifier


def study_selector(study: str, paths: list[Path]):
    async def select(request: IncomingRequest) -> list[Path]:
        return paths if str(request.dataset.StudyInstanceUID) == study else []

    return select


async def run_tool(*args: str, timeout: float = 60.0) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dcmtk_env(),
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    return text


# -- DCMTK SCUs against our listener -----------------------------------------------------------
def test_dcmtk_movescu_against_our_listener(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "archive", 5)
    received = tmp_path / "received"
    received.mkdir()
    movescu_port = free_port()

    async def scenario() -> None:
        async with Listener("QRSCP") as listener:
            listener.on_c_move(study_selector(study, paths), models=(STUDY_ROOT_MOVE,))
            listener.move_destinations["MOVESCU"] = MoveDestination("127.0.0.1", movescu_port)
            await listener.listen("127.0.0.1", 0)
            await run_tool(
                dcmtk("movescu"),
                "-S",
                "-aet",
                "MOVESCU",
                "-aec",
                "QRSCP",
                "-aem",
                "MOVESCU",
                "--port",
                str(movescu_port),
                "-od",
                str(received),
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                "127.0.0.1",
                str(listener.port),
            )

    run(scenario())
    assert by_instance_uid(received) == expected(paths)


def test_dcmtk_getscu_against_our_listener(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "archive", 5)
    received = tmp_path / "received"
    received.mkdir()

    async def scenario() -> None:
        async with Listener("QRSCP") as listener:
            listener.on_c_get(study_selector(study, paths), models=(STUDY_ROOT_GET,))
            await listener.listen("127.0.0.1", 0)
            await run_tool(
                dcmtk("getscu"),
                "-S",
                "-aet",
                "GETSCU",
                "-aec",
                "QRSCP",
                "-od",
                str(received),
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                "127.0.0.1",
                str(listener.port),
            )

    run(scenario())
    assert by_instance_uid(received) == expected(paths)


# -- our SCU against DCMTK dcmqrscp ------------------------------------------------------------
def test_our_store_find_move_get_against_dcmqrscp(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "archive", 4)
    moved = tmp_path / "moved"
    fetched = tmp_path / "fetched"
    destination_port = free_port()

    async def scenario() -> None:
        async with Listener("DEST", accept_any_storage=True) as destination:
            FolderStorage(moved).attach(destination)
            await destination.listen("127.0.0.1", destination_port)
            with dcmqrscp(tmp_path / "qr", destination_port) as port:
                # store
                async with client.connect(
                    "127.0.0.1",
                    port,
                    called_ae_title="QRSCP",
                    contexts=[(CT_IMAGE_STORAGE, ["1.2.840.10008.1.2.1"])],
                ) as assoc:
                    for path in paths:
                        assert (await assoc.store(path)).status == 0x0000
                # find
                query = study_identifier(study)
                query.PatientID = ""
                async with client.connect(
                    "127.0.0.1",
                    port,
                    called_ae_title="QRSCP",
                    contexts=[(STUDY_ROOT_FIND, ["1.2.840.10008.1.2.1"])],
                ) as assoc:
                    found = [r async for r in assoc.find(query, STUDY_ROOT_FIND)]
                assert [r.status for r in found] in ([0xFF00, 0x0000], [0xFF01, 0x0000])
                assert found[0].identifier.StudyInstanceUID == study
                assert found[0].identifier.PatientID == "PID-RETRIEVE"
                # move
                async with client.connect(
                    "127.0.0.1",
                    port,
                    called_ae_title="QRSCP",
                    calling_ae_title="DEST",
                    contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2.1"])],
                ) as assoc:
                    responses = [
                        r
                        async for r in assoc.move(study_identifier(study), STUDY_ROOT_MOVE, "DEST")
                    ]
                assert responses[-1].status == 0x0000
                assert responses[-1].message.number_of_completed_suboperations == 4
                # get
                storage = FolderStorage(fetched)
                contexts, roles = get_contexts(STUDY_ROOT_GET)
                async with client.connect(
                    "127.0.0.1",
                    port,
                    called_ae_title="QRSCP",
                    contexts=contexts,
                    roles=roles,
                    handlers={CommandField.C_STORE_RQ: storage.handle},
                    dataset_sink=storage.sink,
                ) as assoc:
                    responses = [
                        r async for r in assoc.get(study_identifier(study), STUDY_ROOT_GET)
                    ]
                assert responses[-1].status == 0x0000
                assert responses[-1].message.number_of_completed_suboperations == 4

    run(scenario())
    assert by_instance_uid(moved) == expected(paths)
    assert by_instance_uid(fetched) == expected(paths)


# -- pynetdicom, both ways -----------------------------------------------------------------
def test_pynetdicom_get_and_move_against_our_listener(tmp_path: Path) -> None:
    from pynetdicom import AE, build_role, evt

    study, paths = make_study(tmp_path / "archive", 3)
    got: dict[str, bytes] = {}
    moved = tmp_path / "moved"

    def on_store(event) -> int:
        got[str(event.request.AffectedSOPInstanceUID)] = bytes(event.request.DataSet.getvalue())
        return 0x0000

    def pynetdicom_get_and_move(port: int) -> tuple[list[int], list[int]]:
        ae = AE(ae_title="PYNET")
        ae.add_requested_context(STUDY_ROOT_GET)
        ae.add_requested_context(STUDY_ROOT_MOVE)
        ae.add_requested_context(CT_IMAGE_STORAGE, ["1.2.840.10008.1.2.1"])
        assoc = ae.associate(
            "127.0.0.1",
            port,
            ae_title="QRSCP",
            ext_neg=[build_role(CT_IMAGE_STORAGE, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )
        assert assoc.is_established
        try:
            get_statuses = [
                int(status.Status)
                for status, _ in assoc.send_c_get(study_identifier(study), STUDY_ROOT_GET)
            ]
            move_statuses = [
                int(status.Status)
                for status, _ in assoc.send_c_move(study_identifier(study), "DEST", STUDY_ROOT_MOVE)
            ]
        finally:
            assoc.release()
        return get_statuses, move_statuses

    async def scenario() -> tuple[list[int], list[int]]:
        async with (
            Listener("QRSCP") as listener,
            Listener("DEST", accept_any_storage=True) as destination,
        ):
            FolderStorage(moved).attach(destination)
            await destination.listen("127.0.0.1", 0)
            select = study_selector(study, paths)
            listener.on_c_get(select, models=(STUDY_ROOT_GET,))
            listener.on_c_move(select, models=(STUDY_ROOT_MOVE,))
            listener.move_destinations["DEST"] = MoveDestination("127.0.0.1", destination.port)
            await listener.listen("127.0.0.1", 0)
            return await asyncio.to_thread(pynetdicom_get_and_move, listener.port)

    get_statuses, move_statuses = run(scenario())
    assert get_statuses == [0xFF00, 0xFF00, 0x0000]
    assert move_statuses == [0xFF00, 0xFF00, 0x0000]
    assert got == expected(paths)
    assert by_instance_uid(moved) == expected(paths)


def test_our_get_and_move_against_pynetdicom(tmp_path: Path) -> None:
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    study, paths = make_study(tmp_path / "archive", 3)
    fetched = tmp_path / "fetched"
    moved = tmp_path / "moved"
    destination_port = free_port()

    def matches(event):
        if str(event.identifier.StudyInstanceUID) != study:
            return []
        return [dcmread(p) for p in paths]

    def handle_get(event):
        found = matches(event)
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    def handle_move(event):
        found = matches(event)
        yield "127.0.0.1", destination_port
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    ae = AE(ae_title="PYQR")
    ae.add_supported_context(STUDY_ROOT_GET)
    ae.add_supported_context(STUDY_ROOT_MOVE)
    ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.1"], scu_role=True, scp_role=True)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_GET, handle_get), (evt.EVT_C_MOVE, handle_move)],
    )
    try:

        async def scenario() -> None:
            storage = FolderStorage(fetched)
            contexts, roles = get_contexts(STUDY_ROOT_GET, [CT_IMAGE_STORAGE])
            async with client.connect(
                "127.0.0.1",
                port,
                called_ae_title="PYQR",
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: storage.handle},
                dataset_sink=storage.sink,
            ) as assoc:
                responses = [r async for r in assoc.get(study_identifier(study), STUDY_ROOT_GET)]
            assert responses[-1].status == 0x0000
            assert responses[-1].message.number_of_completed_suboperations == 3
            async with Listener("DEST", accept_any_storage=True) as destination:
                FolderStorage(moved).attach(destination)
                await destination.listen("127.0.0.1", destination_port)
                async with client.connect(
                    "127.0.0.1",
                    port,
                    called_ae_title="PYQR",
                    contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2"])],
                ) as assoc:
                    responses = [
                        r
                        async for r in assoc.move(study_identifier(study), STUDY_ROOT_MOVE, "DEST")
                    ]
                assert responses[-1].status == 0x0000
                assert responses[-1].message.number_of_completed_suboperations == 3

        run(scenario())
    finally:
        server.shutdown()
    assert by_instance_uid(fetched) == expected(paths)
    assert by_instance_uid(moved) == expected(paths)
