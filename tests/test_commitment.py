"""Storage Commitment Push Model: both report paths, real verdicts, pynetdicom both ways."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomnet.core.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.net.retrieve import MoveDestination
from dicomnet.services.commitment import (
    CommitmentProvider,
    CommitmentWaiter,
    commitment_contexts,
    request_commitment,
)

from factory import ct_dataset, write_part10
from peers import free_port

CT = "1.2.840.10008.5.1.4.1.1.2"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Store:
    """Files by SOP Instance UID: two good, one conflicting, one truncated."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir()
        self.files: dict[str, Path] = {}
        self.good = [self._add(folder, i) for i in range(2)]
        other = ct_dataset(9)
        self.conflict = "1.2.3.4.100"
        self.files[self.conflict] = write_part10(other, folder / "conflict.dcm")
        truncated = ct_dataset(10)
        path = write_part10(truncated, folder / "truncated.dcm")
        path.write_bytes(path.read_bytes()[:-3000])
        self.truncated = str(truncated.SOPInstanceUID)
        self.files[self.truncated] = path
        self.missing = "1.2.3.4.404"

    def _add(self, folder: Path, index: int) -> str:
        ds = ct_dataset(index)
        self.files[str(ds.SOPInstanceUID)] = write_part10(ds, folder / f"{index}.dcm")
        return str(ds.SOPInstanceUID)

    async def lookup(self, uid: str) -> Path | None:
        return self.files.get(uid)

    def references(self) -> list[tuple[str, str]]:
        uids = [*self.good, self.conflict, self.truncated, self.missing]
        return [(CT, uid) for uid in uids]


def check(result, store: Store) -> None:
    assert sorted(result.committed) == sorted((CT, uid) for uid in store.good)
    reasons = {uid: reason for _, uid, reason in result.failed}
    assert reasons == {store.conflict: 0x0119, store.truncated: 0x0110, store.missing: 0x0112}


def test_report_on_the_same_association(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")

    async def scenario():
        listener = Listener("COMMITSCP")
        CommitmentProvider(store.lookup).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            contexts, roles = commitment_contexts()
            waiter = CommitmentWaiter()
            async with client.connect(
                "127.0.0.1", listener.port, contexts=contexts, roles=roles
            ) as assoc:
                waiter.attach_to(assoc)
                return await request_commitment(assoc, store.references(), waiter, timeout=20)

    check(run(scenario()), store)


def test_report_on_a_new_association(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")

    async def scenario():
        waiter = CommitmentWaiter()
        ours = Listener("COMMITSCU")
        waiter.serve_on(ours)
        await ours.listen("127.0.0.1", 0)
        provider_listener = Listener("COMMITSCP")
        provider = CommitmentProvider(
            store.lookup,
            ae_title="COMMITSCP",
            destinations={"COMMITSCU": MoveDestination("127.0.0.1", ours.port)},
        )
        provider.attach(provider_listener)
        await provider_listener.listen("127.0.0.1", 0)
        async with ours, provider_listener:
            async with client.connect(
                "127.0.0.1",
                provider_listener.port,
                calling_ae_title="COMMITSCU",
                contexts=[(STORAGE_COMMITMENT_PUSH, ["1.2.840.10008.1.2"])],
            ) as assoc:
                result = await request_commitment(assoc, store.references(), waiter, timeout=20)
            return result, ours.association_count

    result, _ = run(scenario())
    check(result, store)


@pytest.mark.interop
def test_pynetdicom_scu_against_our_provider(tmp_path: Path) -> None:
    from pynetdicom import AE, build_role, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    store = Store(tmp_path / "store")
    reports: list[Dataset] = []
    arrived = threading.Event()

    def on_report(event) -> tuple[int, None]:
        reports.append(event.event_information)
        arrived.set()
        return 0x0000, None

    def pynetdicom_side(port: int) -> int:
        ae = AE(ae_title="PYSCU")
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
        assoc = ae.associate(
            "127.0.0.1",
            port,
            ae_title="COMMITSCP",
            ext_neg=[build_role(STORAGE_COMMITMENT_PUSH, scu_role=True, scp_role=True)],
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
        )
        assert assoc.is_established
        action = Dataset()
        action.TransactionUID = "1.2.3.777"
        items = []
        for sop_class, uid in store.references():
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = uid
            items.append(item)
        action.ReferencedSOPSequence = Sequence(items)
        status, _ = assoc.send_n_action(
            action, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
        )
        arrived.wait(20)
        assoc.release()
        return int(status.Status)

    async def scenario() -> int:
        listener = Listener("COMMITSCP")
        CommitmentProvider(store.lookup).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            return await asyncio.to_thread(pynetdicom_side, listener.port)

    assert run(scenario()) == 0
    (report,) = reports
    assert report.TransactionUID == "1.2.3.777"
    assert {item.ReferencedSOPInstanceUID for item in report.ReferencedSOPSequence} == set(
        store.good
    )
    assert {int(item.FailureReason) for item in report.FailedSOPSequence} == {
        0x0110,
        0x0112,
        0x0119,
    }


@pytest.mark.interop
def test_our_scu_against_pynetdicom_reporting_on_a_new_association(tmp_path: Path) -> None:
    from pynetdicom import AE, build_role, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    our_port = free_port()

    def report_later(action: Dataset) -> None:
        time.sleep(0.2)
        ae = AE(ae_title="PYSCP")
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH)
        assoc = ae.associate(
            "127.0.0.1",
            our_port,
            ae_title="OURSCU",
            ext_neg=[build_role(STORAGE_COMMITMENT_PUSH, scu_role=False, scp_role=True)],
        )
        report = Dataset()
        report.TransactionUID = action.TransactionUID
        report.ReferencedSOPSequence = action.ReferencedSOPSequence
        assoc.send_n_event_report(
            report, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
        )
        assoc.release()

    def on_action(event):
        threading.Thread(target=report_later, args=(event.action_information,)).start()
        return 0x0000, None

    ae = AE(ae_title="PYSCP")
    ae.add_supported_context(STORAGE_COMMITMENT_PUSH)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_N_ACTION, on_action)]
    )
    try:

        async def scenario():
            waiter = CommitmentWaiter()
            ours = Listener("OURSCU")
            waiter.serve_on(ours)
            await ours.listen("127.0.0.1", our_port)
            async with ours:
                async with client.connect(
                    "127.0.0.1",
                    port,
                    called_ae_title="PYSCP",
                    contexts=[(STORAGE_COMMITMENT_PUSH, ["1.2.840.10008.1.2"])],
                ) as assoc:
                    refs = [(CT, "1.2.3.4.1"), (CT, "1.2.3.4.2")]
                    return await request_commitment(assoc, refs, waiter, timeout=20)

        result = run(scenario())
    finally:
        server.shutdown()
    assert result.committed == [(CT, "1.2.3.4.1"), (CT, "1.2.3.4.2")]
    assert result.failed == []


# -- the provider's answers, the default waiter, the order of response and report -----------
def test_plain_lookup_default_waiter_and_response_before_report(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    order: list[str] = []

    def plain_lookup(uid: str) -> Path | None:  # a plain function is called, not awaited
        return store.files.get(uid)

    async def scenario():
        listener = Listener("COMMITSCP")
        CommitmentProvider(plain_lookup).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            contexts, roles = commitment_contexts()
            async with client.connect(
                "127.0.0.1", listener.port, contexts=contexts, roles=roles
            ) as assoc:
                assoc.on_request_completed = lambda request, response: order.append(
                    type(response).__name__
                )
                waiter = CommitmentWaiter()

                async def report(request):
                    order.append("report")
                    return await waiter.handle(request)

                assoc.on_n_event_report_request(report)
                first = await request_commitment(
                    assoc, store.references(), waiter, transaction_uid="1.2.3.55", timeout=20
                )
                # no waiter given: one is attached to the association; a missing
                # instance needs no file check, so the report is ready at once
                second = await request_commitment(assoc, [(CT, store.missing)], timeout=20)
                return first, second

    first, second = run(scenario())
    check(first, store)
    assert first.transaction_uid == "1.2.3.55"
    assert second.committed == [] and second.failed == [(CT, store.missing, 0x0112)]
    assert second.transaction_uid != first.transaction_uid
    # the N-ACTION-RSP came before the N-EVENT-REPORT (PS3.4 J.3.2); the
    # second report went to the default waiter, which replaced the recorder
    assert order == ["NActionRSP", "report", "NActionRSP"]


def test_provider_refuses_what_is_not_a_commitment_request(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")

    async def scenario():
        listener = Listener("COMMITSCP")
        CommitmentProvider(store.lookup).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1",
                listener.port,
                contexts=[(STORAGE_COMMITMENT_PUSH, ["1.2.840.10008.1.2"])],
            ) as assoc:
                action = Dataset()
                action.TransactionUID = "1.2.3.56"
                item = Dataset()
                item.ReferencedSOPClassUID = CT
                item.ReferencedSOPInstanceUID = store.good[0]
                action.ReferencedSOPSequence = Sequence([item])
                no_uid = Dataset()
                no_uid.ReferencedSOPSequence = Sequence([item])
                push, instance = STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
                return (
                    await assoc.n_action(push, instance, 2, action),
                    await assoc.n_action(push, "1.2.3.4", 1, action),
                    await assoc.n_action(push, instance, 1, no_uid),
                    await assoc.n_action(push, instance, 1, None),
                )

    wrong_type, wrong_instance, no_uid, nothing = run(scenario())
    assert wrong_type.status == 0x0123
    assert wrong_instance.status == 0x0117
    assert no_uid.status == 0x0115 and no_uid.message.error_comment == "no Transaction UID"
    assert nothing.status == 0x0115
    assert not any(r.ok for r in (wrong_type, wrong_instance, no_uid, nothing))


@pytest.mark.interop
def test_pynetdicom_scu_receives_the_report_on_a_new_association(tmp_path: Path) -> None:
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    store = Store(tmp_path / "store")
    reports: list[tuple[int, Dataset, str]] = []
    arrived = threading.Event()

    def on_report(event) -> tuple[int, None]:
        reports.append(
            (int(event.event_type), event.event_information, event.assoc.requestor.ae_title)
        )
        arrived.set()
        return 0x0000, None

    pyn_port = free_port()
    requester = AE(ae_title="PYSCU")
    requester.add_supported_context(STORAGE_COMMITMENT_PUSH, scu_role=True, scp_role=True)
    requester.add_requested_context(STORAGE_COMMITMENT_PUSH)
    server = requester.start_server(
        ("127.0.0.1", pyn_port), block=False, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
    )

    def pynetdicom_side(port: int) -> tuple[int, bool]:
        assoc = requester.associate("127.0.0.1", port, ae_title="COMMITSCP")
        assert assoc.is_established
        action = Dataset()
        action.TransactionUID = "1.2.3.778"
        item = Dataset()
        item.ReferencedSOPClassUID = CT
        item.ReferencedSOPInstanceUID = store.good[1]
        action.ReferencedSOPSequence = Sequence([item])
        status, _ = assoc.send_n_action(
            action, 1, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE
        )
        assoc.release()  # the report does not need this association
        return int(status.Status), arrived.wait(20)

    async def scenario() -> tuple[int, bool]:
        listener = Listener("COMMITSCP")
        CommitmentProvider(
            store.lookup,
            ae_title="COMMITSCP",
            destinations={"PYSCU": MoveDestination("127.0.0.1", pyn_port)},
        ).attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            return await asyncio.to_thread(pynetdicom_side, listener.port)

    try:
        status, delivered = run(scenario())
    finally:
        server.shutdown()
    assert (status, delivered) == (0, True)
    ((event_type, report, calling),) = reports
    assert (event_type, calling) == (1, "COMMITSCP")
    assert report.TransactionUID == "1.2.3.778"
    assert [i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence] == [store.good[1]]
    assert "FailedSOPSequence" not in report


# -- dicomnet commit -------------------------------------------------------------------------
@contextmanager
def provider_in_thread(provider: CommitmentProvider) -> Iterator[int]:
    """Our provider on its own event loop in a thread, while CliRunner runs the command."""
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        listener = Listener("ARCHIVE")
        provider.attach(listener)
        await listener.listen("127.0.0.1", 0)
        stop = asyncio.Event()
        state.update(loop=asyncio.get_running_loop(), stop=stop, port=listener.port)
        ready.set()
        async with listener:
            await asyncio.wait_for(stop.wait(), 60)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield int(state["port"])  # type: ignore[call-overload]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
        thread.join(10)


def test_commit_command_on_the_same_association(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dicomnet.cli.commit import commit

    store = Store(tmp_path / "store")
    good = [str(store.files[uid]) for uid in store.good]
    with provider_in_thread(CommitmentProvider(store.lookup)) as port:
        ok = CliRunner().invoke(commit, ["--aec", "ARCHIVE", "127.0.0.1", str(port), *good])
        mixed = CliRunner().invoke(
            commit,
            ["--timeout", "20", "127.0.0.1", str(port), good[0], str(store.files[store.truncated])],
        )
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("committed") == 2 and "failed" not in ok.output
    assert mixed.exit_code == 1
    assert "committed" in mixed.output and "failed 0x0110" in mixed.output
    assert "truncated.dcm" in mixed.output


def test_commit_command_on_a_new_association(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dicomnet.cli.commit import commit

    store = Store(tmp_path / "store")
    files = [str(store.files[uid]) for uid in (*store.good, store.truncated)]
    report_port = free_port()
    provider = CommitmentProvider(
        store.lookup,
        ae_title="ARCHIVE",
        destinations={"CLISCU": MoveDestination("127.0.0.1", report_port)},
    )
    with provider_in_thread(provider) as port:
        common = ["--aet", "CLISCU", "--aec", "ARCHIVE", "127.0.0.1", str(port)]
        listening = CliRunner().invoke(
            commit,
            [
                *("--new-association", "--port", str(report_port)),
                *("--report-host", "127.0.0.1", "--timeout", "20"),
                *common,
                *files,
            ],
        )
        # Nobody listens for the report the archive sends on a new association.
        deaf = CliRunner().invoke(commit, ["--timeout", "1", *common, files[0]])
        usage = CliRunner().invoke(commit, ["--new-association", *common, files[0]])
    assert listening.exit_code == 1, listening.output
    assert listening.output.count("committed") == 2
    assert "truncated.dcm" in listening.output and "failed 0x0110" in listening.output
    assert deaf.exit_code == 1 and "no report in time" in deaf.output
    assert usage.exit_code == 2 and "needs --port" in usage.output
