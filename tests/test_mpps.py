"""MPPS: the state rules, persistence, and pynetdicom both ways."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicomnet.core.uids import MPPS
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.services.mpps import MPPSProvider, complete_procedure_step, start_procedure_step

from peers import free_port

IMPLICIT = "1.2.840.10008.1.2"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def step_attributes() -> Dataset:
    ds = Dataset()
    ds.PatientName = "MPPS^PATIENT"
    ds.PatientID = "M1"
    ds.PerformedProcedureStepID = "STEP1"
    ds.Modality = "CT"
    return ds


def test_state_rules_and_persistence(tmp_path: Path) -> None:
    provider = MPPSProvider(tmp_path / "mpps")

    async def scenario() -> str:
        listener = Listener("MPPSSCP")
        provider.attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            async with client.connect(
                "127.0.0.1", listener.port, contexts=[(MPPS, [IMPLICIT])]
            ) as assoc:
                created = await start_procedure_step(assoc, step_attributes())
                assert created.status == 0
                uid = created.message.affected_sop_instance_uid
                again = await assoc.n_create(MPPS, uid, _in_progress())
                assert again.status == 0x0111
                wrong = step_attributes()
                wrong.PerformedProcedureStepStatus = "COMPLETED"
                refused = await assoc.n_create(MPPS, None, wrong)
                assert refused.status == 0x0106 and not refused.ok
                assert refused.attributes.PerformedProcedureStepStatus == "COMPLETED"
                missing = await assoc.n_create(MPPS, None, step_attributes())
                assert missing.status == 0x0120
                assert "(0040,0252)" in missing.message.error_comment
                progress = Dataset()
                progress.PerformedProcedureStepDescription = "halfway"
                assert (await assoc.n_set(MPPS, uid, progress)).status == 0
                bad = Dataset()
                bad.PerformedProcedureStepStatus = "PAUSED"
                assert (await assoc.n_set(MPPS, uid, bad)).status == 0x0106
                done = await complete_procedure_step(assoc, uid, Dataset())
                assert done.status == 0
                late = Dataset()
                late.PerformedProcedureStepDescription = "too late"
                final = await assoc.n_set(MPPS, uid, late)
                assert final.status == 0x0110
                assert final.message.error_id == 0xA710
                assert final.message.error_comment == (
                    "Performed Procedure Step Object may no longer be updated"
                )
                assert (await assoc.n_set(MPPS, "1.2.3.404", late)).status == 0x0112
                return str(uid)

    uid = run(scenario())
    assert [p.name for p in (tmp_path / "mpps").iterdir()] == [f"{uid}.json"]
    reloaded = MPPSProvider(tmp_path / "mpps")
    step = reloaded.steps[uid]
    assert step.PerformedProcedureStepStatus == "COMPLETED"
    assert step.PerformedProcedureStepDescription == "halfway"
    assert step.PatientID == "M1"


def _in_progress() -> Dataset:
    ds = step_attributes()
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    return ds


@pytest.mark.interop
def test_pynetdicom_modality_against_our_mpps_scp() -> None:
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    provider = MPPSProvider()
    comments: list[object] = []

    def modality(port: int) -> list[int]:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(MPPS)
        assoc = ae.associate("127.0.0.1", port, ae_title="MPPSSCP")
        assert assoc.is_established
        statuses = []
        try:
            status, _ = assoc.send_n_create(_in_progress(), MPPS, "1.2.3.4.55")
            statuses.append(int(status.Status))
            final = Dataset()
            final.PerformedProcedureStepStatus = "DISCONTINUED"
            status, _ = assoc.send_n_set(final, MPPS, "1.2.3.4.55")
            statuses.append(int(status.Status))
            status, _ = assoc.send_n_set(final, MPPS, "1.2.3.4.55")
            statuses.append(int(status.Status))
            comments.append(str(status.get("ErrorComment", "")))
            comments.append(int(status.get("ErrorID", 0)))
            status, _ = assoc.send_n_create(_in_progress(), MPPS, "1.2.3.4.55")
            statuses.append(int(status.Status))
            status, _ = assoc.send_n_set(final, MPPS, "1.2.3.4.404")
            statuses.append(int(status.Status))
        finally:
            assoc.release()
        return statuses

    async def scenario() -> list[int]:
        listener = Listener("MPPSSCP")
        provider.attach(listener)
        await listener.listen("127.0.0.1", 0)
        async with listener:
            return await asyncio.to_thread(modality, listener.port)

    assert run(scenario()) == [0x0000, 0x0000, 0x0110, 0x0111, 0x0112]
    assert comments == ["Performed Procedure Step Object may no longer be updated", 0xA710]
    assert provider.steps["1.2.3.4.55"].PerformedProcedureStepStatus == "DISCONTINUED"


@pytest.mark.interop
def test_our_modality_against_pynetdicom_mpps_scp() -> None:
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    seen: list[tuple[str, str]] = []

    def on_create(event):
        seen.append(("create", str(event.attribute_list.PerformedProcedureStepStatus)))
        ds = event.attribute_list
        ds.AffectedSOPInstanceUID = event.request.AffectedSOPInstanceUID or "1.2.3.4.66"
        return 0x0000, ds

    def on_set(event):
        seen.append(("set", str(event.attribute_list.PerformedProcedureStepStatus)))
        return 0x0000, event.attribute_list

    ae = AE(ae_title="PYMPPS")
    ae.add_supported_context(MPPS, IMPLICIT)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)],
    )
    try:

        async def scenario() -> None:
            async with client.connect(
                "127.0.0.1", port, called_ae_title="PYMPPS", contexts=[(MPPS, [IMPLICIT])]
            ) as assoc:
                created = await start_procedure_step(assoc, step_attributes(), "1.2.3.4.66")
                assert created.status == 0
                assert created.message.affected_sop_instance_uid == "1.2.3.4.66"
                done = await complete_procedure_step(assoc, "1.2.3.4.66", Dataset())
                assert done.status == 0

        run(scenario())
    finally:
        server.shutdown()
    assert seen == [("create", "IN PROGRESS"), ("set", "COMPLETED")]
