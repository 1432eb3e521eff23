"""C-GET and C-MOVE between dicomnet ends: sub-operations, counters, statuses, cancel."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomnet.core.dimse import CommandField
from dicomnet.core.uids import SOP_CLASSES, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from dicomnet.net import client
from dicomnet.net.association import IncomingRequest
from dicomnet.net.listener import Listener, ListenerLimits
from dicomnet.net.retrieve import COMMON_STORAGE_CLASSES, MoveDestination, get_contexts
from dicomnet.services.storage import FolderStorage

from factory import ct_dataset, dataset_bytes, write_part10
from peers import free_port


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Archive:
    """Part 10 files of one study, selected by StudyInstanceUID."""

    def __init__(self, folder: Path, count: int) -> None:
        self.study = generate_uid()
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = [
            write_part10(ct_dataset(i, study=self.study), folder / f"{i}.dcm") for i in range(count)
        ]
        self.requests: list[IncomingRequest] = []

    async def select(self, request: IncomingRequest) -> list[Path]:
        self.requests.append(request)
        wanted = str(request.dataset.StudyInstanceUID)
        return self.paths if wanted == self.study else []


def study_identifier(study: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    return identifier


def failed_list(identifier: Dataset) -> list[str]:
    value = identifier.FailedSOPInstanceUIDList
    return [value] if isinstance(value, str) else list(value)


def same_datasets(sent: list[Path], folder: Path) -> bool:
    received = {p.name: dataset_bytes(p) for p in folder.glob("*.dcm")}
    expected = {}
    for path in sent:
        data = dataset_bytes(path)
        from pydicom import dcmread

        expected[f"{dcmread(path, stop_before_pixels=True).SOPInstanceUID}.dcm"] = data
    return received == expected


async def get_listener(archive: Archive) -> Listener:
    listener = Listener("QRSCP")
    listener.on_c_get(archive.select, models=(STUDY_ROOT_GET,))
    await listener.listen("127.0.0.1", 0)
    return listener


def test_common_storage_classes_are_standard_storage_classes() -> None:
    assert len(set(COMMON_STORAGE_CLASSES)) == len(COMMON_STORAGE_CLASSES)
    for uid in COMMON_STORAGE_CLASSES:
        assert SOP_CLASSES[uid].split(" - ")[0].endswith("Storage"), uid


def test_get_contexts_ask_for_the_scp_role_only() -> None:
    contexts, roles = get_contexts(STUDY_ROOT_GET, ["1.2.840.10008.5.1.4.1.1.2"])
    assert contexts[0][0] == STUDY_ROOT_GET
    assert [c[0] for c in contexts[1:]] == ["1.2.840.10008.5.1.4.1.1.2"]
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in roles] == [
        ("1.2.840.10008.5.1.4.1.1.2", False, True)
    ]
    with pytest.raises(ValueError, match="128"):
        get_contexts(STUDY_ROOT_GET, [f"1.2.3.{i}" for i in range(127)])


def test_c_get_sends_every_instance_back_with_counters(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 4)
    received = tmp_path / "received"

    async def scenario() -> None:
        listener = await get_listener(archive)
        storage = FolderStorage(received)
        contexts, roles = get_contexts(STUDY_ROOT_GET)
        async with (
            listener,
            client.connect(
                "127.0.0.1",
                listener.port,
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: storage.handle},
                dataset_sink=storage.sink,
            ) as assoc,
        ):
            responses = [
                r async for r in assoc.get(study_identifier(archive.study), STUDY_ROOT_GET)
            ]
        pending = [r for r in responses if r.pending]
        final = responses[-1]
        assert [r.message.number_of_remaining_suboperations for r in pending] == [3, 2, 1]
        assert [r.message.number_of_completed_suboperations for r in pending] == [1, 2, 3]
        assert final.status == 0x0000
        assert final.message.number_of_completed_suboperations == 4
        assert final.message.number_of_failed_suboperations == 0
        assert final.message.number_of_remaining_suboperations is None
        assert final.identifier is None

    run(scenario())
    assert same_datasets(archive.paths, received)


def test_c_get_with_no_match_answers_success_with_zero_counts(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 1)

    async def scenario() -> None:
        listener = await get_listener(archive)
        contexts, roles = get_contexts(STUDY_ROOT_GET)
        async with (
            listener,
            client.connect("127.0.0.1", listener.port, contexts=contexts, roles=roles) as assoc,
        ):
            responses = [r async for r in assoc.get(study_identifier("1.2.3"), STUDY_ROOT_GET)]
        assert [r.status for r in responses] == [0x0000]
        assert responses[0].message.number_of_completed_suboperations == 0

    run(scenario())


def test_c_get_failed_sub_operation_gives_warning_and_failed_list(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 3)
    refused: list[str] = []

    async def refuse_second(request: IncomingRequest) -> int:
        if len(refused) == 0 and request.message.affected_sop_instance_uid:
            refused.append(request.message.affected_sop_instance_uid)
            return 0xA700
        return 0x0000

    async def scenario() -> None:
        listener = await get_listener(archive)
        contexts, roles = get_contexts(STUDY_ROOT_GET)
        async with (
            listener,
            client.connect(
                "127.0.0.1",
                listener.port,
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: refuse_second},
            ) as assoc,
        ):
            responses = [
                r async for r in assoc.get(study_identifier(archive.study), STUDY_ROOT_GET)
            ]
        final = responses[-1]
        assert final.status == 0xB000
        assert final.message.number_of_completed_suboperations == 2
        assert final.message.number_of_failed_suboperations == 1
        assert failed_list(final.identifier) == refused

    run(scenario())


def test_c_get_without_the_scp_role_fails_every_sub_operation(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 2)

    async def scenario() -> None:
        listener = await get_listener(archive)
        contexts, _ = get_contexts(STUDY_ROOT_GET)
        async with (
            listener,
            client.connect("127.0.0.1", listener.port, contexts=contexts) as assoc,
        ):
            responses = [
                r async for r in assoc.get(study_identifier(archive.study), STUDY_ROOT_GET)
            ]
        final = responses[-1]
        assert final.status == 0xA702
        assert final.message.number_of_failed_suboperations == 2
        assert len(failed_list(final.identifier)) == 2

    run(scenario())


def test_c_get_cancel_stops_between_sub_operations(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 6)
    stored: list[str] = []

    async def slow_store(request: IncomingRequest) -> int:
        stored.append(request.message.affected_sop_instance_uid)
        await asyncio.sleep(0.05)
        return 0x0000

    async def scenario() -> None:
        listener = await get_listener(archive)
        contexts, roles = get_contexts(STUDY_ROOT_GET)
        async with (
            listener,
            client.connect(
                "127.0.0.1",
                listener.port,
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: slow_store},
            ) as assoc,
        ):
            request_iter = assoc.get(study_identifier(archive.study), STUDY_ROOT_GET)
            first = await anext(request_iter)
            assert first.pending
            outstanding = next(iter(assoc._outstanding.values()))
            await assoc.cancel(outstanding)
            rest = [r async for r in request_iter]
            final = rest[-1]
            assert final.status == 0xFE00
            remaining = final.message.number_of_remaining_suboperations
            assert remaining is not None and remaining > 0
            assert final.message.number_of_completed_suboperations + remaining == 6
            await assoc.echo()  # the association is still usable

    run(scenario())
    assert 1 <= len(stored) < 6


def test_c_get_selector_status_refuses_the_request(tmp_path: Path) -> None:
    async def refuse(request: IncomingRequest) -> int:
        return 0xA900

    async def scenario() -> None:
        listener = Listener("QRSCP")
        listener.on_c_get(refuse, models=(STUDY_ROOT_GET,))
        await listener.listen("127.0.0.1", 0)
        contexts, roles = get_contexts(STUDY_ROOT_GET)
        async with (
            listener,
            client.connect("127.0.0.1", listener.port, contexts=contexts, roles=roles) as assoc,
        ):
            responses = [r async for r in assoc.get(study_identifier("1.2.3"), STUDY_ROOT_GET)]
        assert [r.status for r in responses] == [0xA900]

    run(scenario())


async def move_pair(
    archive: Archive, received: Path, delay: float = 0.0, window: int = 8
) -> tuple[Listener, Listener, list]:
    destination = Listener("DEST", accept_any_storage=True)
    storage = FolderStorage(received)
    storage.attach(destination)
    commands: list = []
    original = storage.handle

    async def record(request: IncomingRequest) -> int:
        commands.append(request.message)
        await asyncio.sleep(delay)
        return await original(request)

    destination.on_c_store(record)
    await destination.listen("127.0.0.1", 0)
    source = Listener("QRSCP")
    source.on_c_move(archive.select, models=(STUDY_ROOT_MOVE,))
    source.move_destinations["DEST"] = MoveDestination(
        "127.0.0.1", destination.port, max_operations_invoked=window
    )
    await source.listen("127.0.0.1", 0)
    return source, destination, commands


def test_c_move_sends_to_the_destination_with_originator_fields(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 3)
    received = tmp_path / "received"

    async def scenario() -> None:
        source, destination, commands = await move_pair(archive, received)
        async with (
            source,
            destination,
            client.connect(
                "127.0.0.1",
                source.port,
                calling_ae_title="MOVER",
                contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2.1"])],
            ) as assoc,
        ):
            responses = [
                r
                async for r in assoc.move(study_identifier(archive.study), STUDY_ROOT_MOVE, "DEST")
            ]
            message_id = responses[-1].message.message_id_being_responded_to
        final = responses[-1]
        assert final.status == 0x0000
        assert final.message.number_of_completed_suboperations == 3
        assert [r.message.number_of_remaining_suboperations for r in responses[:-1]] == [2, 1]
        assert {m.move_originator_ae_title for m in commands} == {"MOVER"}
        assert {m.move_originator_message_id for m in commands} == {message_id}

    run(scenario())
    assert same_datasets(archive.paths, received)


def test_c_move_to_an_unknown_destination_answers_a801(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 1)

    async def scenario() -> None:
        source, destination, _ = await move_pair(archive, tmp_path / "received")
        async with (
            source,
            destination,
            client.connect(
                "127.0.0.1", source.port, contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2"])]
            ) as assoc,
        ):
            responses = [
                r
                async for r in assoc.move(
                    study_identifier(archive.study), STUDY_ROOT_MOVE, "NOBODY"
                )
            ]
        assert [r.status for r in responses] == [0xA801]
        assert archive.requests == []  # refused before selecting anything

    run(scenario())


def test_c_move_to_an_unreachable_destination_fails_every_sub_operation(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 2)

    async def scenario() -> None:
        source = Listener("QRSCP")
        source.on_c_move(archive.select, models=(STUDY_ROOT_MOVE,))
        source.move_destinations["GONE"] = MoveDestination("127.0.0.1", free_port())
        await source.listen("127.0.0.1", 0)
        async with (
            source,
            client.connect(
                "127.0.0.1", source.port, contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2"])]
            ) as assoc,
        ):
            responses = [
                r
                async for r in assoc.move(study_identifier(archive.study), STUDY_ROOT_MOVE, "GONE")
            ]
        final = responses[-1]
        assert final.status == 0xA702
        assert final.message.number_of_failed_suboperations == 2
        assert len(failed_list(final.identifier)) == 2

    run(scenario())


def test_c_move_counts_an_unreadable_file_as_failed(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 2)
    broken = tmp_path / "archive" / "broken.dcm"
    broken.write_bytes(b"not a dicom file")
    archive.paths.append(broken)

    async def scenario() -> None:
        source, destination, _ = await move_pair(archive, tmp_path / "received")
        async with (
            source,
            destination,
            client.connect(
                "127.0.0.1", source.port, contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2"])]
            ) as assoc,
        ):
            responses = [
                r
                async for r in assoc.move(study_identifier(archive.study), STUDY_ROOT_MOVE, "DEST")
            ]
        final = responses[-1]
        assert final.status == 0xB000
        assert final.message.number_of_completed_suboperations == 2
        assert final.message.number_of_failed_suboperations == 1

    run(scenario())


def test_aclosing_a_move_cancels_it(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 5)

    async def scenario() -> None:
        source, destination, commands = await move_pair(archive, tmp_path / "received", 0.05, 1)
        async with (
            source,
            destination,
            client.connect(
                "127.0.0.1", source.port, contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2"])]
            ) as assoc,
        ):
            async with aclosing(
                assoc.move(study_identifier(archive.study), STUDY_ROOT_MOVE, "DEST")
            ) as responses:
                async for response in responses:
                    assert response.pending
                    break
            await assoc.echo()
        assert archive.requests[0].cancelled
        return len(commands)

    moved = run(scenario())
    assert 1 <= moved < 5


def test_c_get_sub_operation_left_unanswered_fails_after_the_dimse_timeout(
    tmp_path: Path,
) -> None:
    archive = Archive(tmp_path / "archive", 1)

    async def never_soon(request: IncomingRequest) -> int:
        await asyncio.sleep(3)
        return 0x0000

    async def scenario() -> list:
        listener = Listener("QRSCP", limits=ListenerLimits(dimse_timeout=0.5))
        listener.on_c_get(archive.select, models=(STUDY_ROOT_GET,))
        await listener.listen("127.0.0.1", 0)
        contexts, roles = get_contexts(STUDY_ROOT_GET)
        async with listener:
            assoc = await client.connect(
                "127.0.0.1",
                listener.port,
                contexts=contexts,
                roles=roles,
                handlers={CommandField.C_STORE_RQ: never_soon},
            )
            responses = [
                r async for r in assoc.get(study_identifier(archive.study), STUDY_ROOT_GET)
            ]
            await assoc.abort()
            return responses

    final = run(scenario())[-1]
    assert final.status == 0xA702  # every sub-operation failed
    assert final.message.number_of_failed_suboperations == 1


def test_destination_aborting_during_c_move_fails_the_rest(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 6)
    received = tmp_path / "received"

    async def scenario() -> list:
        source, destination, commands = await move_pair(archive, received, window=1)
        original = destination.handlers[CommandField.C_STORE_RQ]

        async def abort_at_the_third(request: IncomingRequest) -> int:
            if len(commands) == 2:  # two stored already: this is the third
                protocol = request.association.protocol
                protocol.connection.abort(source=2, reason=0)
                protocol.flush()
                await asyncio.sleep(1)
            return await original(request)

        destination.handle(CommandField.C_STORE_RQ, abort_at_the_third)
        async with (
            source,
            destination,
            client.connect(
                "127.0.0.1", source.port, contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2.1"])]
            ) as assoc,
        ):
            responses = [
                r
                async for r in assoc.move(study_identifier(archive.study), STUDY_ROOT_MOVE, "DEST")
            ]
            assert (await assoc.echo()).status == 0  # the originator's association goes on
        assert not destination.associations and not source.associations
        return responses

    final = run(scenario())[-1]
    assert final.status == 0xB000  # some sub-operations failed
    assert final.message.number_of_completed_suboperations == 2
    assert final.message.number_of_failed_suboperations == 4
    assert len(list(received.glob("*.dcm"))) == 2  # the aborted third left nothing


def test_originator_aborting_during_c_move_stops_the_sub_operations(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive", 20)
    received = tmp_path / "received"

    async def scenario() -> tuple[int, int]:
        source, destination, commands = await move_pair(archive, received, delay=0.1, window=1)
        async with source, destination:
            assoc = await client.connect(
                "127.0.0.1", source.port, contexts=[(STUDY_ROOT_MOVE, ["1.2.840.10008.1.2.1"])]
            )
            async for response in assoc.move(
                study_identifier(archive.study), STUDY_ROOT_MOVE, "DEST"
            ):
                if response.message.number_of_completed_suboperations == 2:
                    break
            await assoc.abort()
            sent_at_abort = len(commands)
            for _ in range(100):  # bounded: the source winds down its sub-association
                if not source.associations and not destination.associations:
                    break
                await asyncio.sleep(0.05)
            assert not source.associations and not destination.associations
            return sent_at_abort, len(commands)

    at_abort, in_the_end = run(scenario())
    assert in_the_end <= at_abort + 1 < 20  # at most the one in flight went on


def test_sub_operation_counters_stay_within_their_us_fields() -> None:
    from dicomnet.core import dimse
    from dicomnet.core.codec import encode_command
    from dicomnet.net.retrieve import SubOperations

    counters = SubOperations(70_000)
    pending = counters.pending()
    assert pending.fields["number_of_remaining_suboperations"] == 0xFFFF
    for index in range(70_000):
        counters.record(0xA700 if index < 10 else 0x0000, f"1.2.3.{index}")
    final = counters.final()
    assert final.fields["number_of_completed_suboperations"] == 0xFFFF  # 69,990 really
    assert final.fields["number_of_failed_suboperations"] == 10
    assert len(final.dataset.FailedSOPInstanceUIDList) == 10
    request = dimse.CGetRQ(message_id=1, affected_sop_class_uid=STUDY_ROOT_GET, has_dataset=True)
    response = dimse.response_for(request, final.status, has_dataset=True, **final.fields)
    assert encode_command(dimse.to_command(response))  # encodable: every count fits
