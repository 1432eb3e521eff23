"""Storage Commitment Push Model: both report paths, real verdicts, pynetdicom both ways."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomnet import client
from dicomnet.commitment import (
    CommitmentProvider,
    CommitmentWaiter,
    commitment_contexts,
    request_commitment,
)
from dicomnet.retrieve import MoveDestination
from dicomnet.server import Listener
from dicomnet.uids import STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_PUSH_INSTANCE

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
