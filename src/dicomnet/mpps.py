"""Modality Performed Procedure Step (PS3.4 F.7): N-CREATE, then N-SET until final.

Theory of operation
-------------------
A modality creates a procedure step with N-CREATE when it starts (status IN
PROGRESS) and updates it with N-SET; once set to COMPLETED or DISCONTINUED
it is final and every later N-SET is refused with 0xC310 ("performed
procedure step object may no longer be updated"). :class:`MPPSProvider`
enforces that; it keeps the steps in memory and, given a folder, also as one
DICOM JSON file per step (``<SOP Instance UID>.json``), written atomically,
so they survive a restart and other tools can read them.

Statuses: 0x0111 for an N-CREATE of an instance that exists, 0x0112 for an
N-SET of one that does not, 0x0106 (invalid attribute value) for a missing
or unknown Performed Procedure Step Status.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dicomnet.association import IncomingRequest, Reply
from dicomnet.dimse import CommandField
from dicomnet.uids import MPPS, is_valid_uid

__all__ = ["MPPSProvider", "complete_procedure_step", "start_procedure_step"]

IN_PROGRESS = "IN PROGRESS"
FINAL = frozenset({"COMPLETED", "DISCONTINUED"})
STATES = FINAL | {IN_PROGRESS}

DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
INVALID_VALUE = 0x0106
MAY_NO_LONGER_BE_UPDATED = 0xC310


class MPPSProvider:
    """The MPPS SCP: procedure steps by SOP Instance UID, with the state rules.

    Parameters
    ----------
    folder : path, optional
        Keep each step as DICOM JSON here too, and load those present.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.steps: dict[str, Any] = {}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._load()

    def attach(self, listener: Any) -> None:
        listener.on_n_service(CommandField.N_CREATE_RQ, self.create, [MPPS])
        listener.on_n_service(CommandField.N_SET_RQ, self.update, [MPPS])

    async def create(self, request: IncomingRequest) -> Reply | int:
        from pydicom.dataset import Dataset
        from pydicom.uid import generate_uid

        uid = request.message.affected_sop_instance_uid or str(generate_uid())
        if not is_valid_uid(uid):
            return INVALID_VALUE
        if uid in self.steps:
            return DUPLICATE_INSTANCE
        step = request.dataset if request.dataset is not None else Dataset()
        if str(step.get("PerformedProcedureStepStatus", "")) != IN_PROGRESS:
            return Reply(
                INVALID_VALUE,
                None,
                {"error_comment": "Performed Procedure Step Status must be IN PROGRESS"},
            )
        self.steps[uid] = step
        self._save(uid)
        return Reply(0x0000, step, {"affected_sop_instance_uid": uid})

    async def update(self, request: IncomingRequest) -> Reply | int:
        uid = request.message.requested_sop_instance_uid
        step = self.steps.get(uid)
        if step is None:
            return NO_SUCH_INSTANCE
        if str(step.get("PerformedProcedureStepStatus", "")) in FINAL:
            return MAY_NO_LONGER_BE_UPDATED
        changes = request.dataset
        if changes is not None:
            status = changes.get("PerformedProcedureStepStatus")
            if status is not None and str(status) not in STATES:
                return Reply(INVALID_VALUE, None, {"error_comment": f"unknown status {status}"})
            for element in changes:
                step[element.tag] = element
        self._save(uid)
        return Reply(0x0000, step)

    def _save(self, uid: str) -> None:
        if self.folder is None:
            return
        path = self.folder / f"{uid}.json"
        temporary = self.folder / f".{uid}.json.part"
        temporary.write_text(json.dumps(self.steps[uid].to_json_dict()))
        os.replace(temporary, path)

    def _load(self) -> None:
        from pydicom.dataset import Dataset

        assert self.folder is not None
        for path in self.folder.glob("*.json"):
            self.steps[path.stem] = Dataset.from_json(path.read_text())


async def start_procedure_step(association: Any, attributes: Any, uid: str | None = None) -> Any:
    """N-CREATE an MPPS instance IN PROGRESS; the :class:`~dicomnet.services.NResult`.

    The instance's UID is ``result.message.affected_sop_instance_uid``.
    """
    attributes.PerformedProcedureStepStatus = IN_PROGRESS
    return await association.n_create(MPPS, uid, attributes)


async def complete_procedure_step(
    association: Any, uid: str, attributes: Any, *, status: str = "COMPLETED"
) -> Any:
    """N-SET the final attributes and status (COMPLETED or DISCONTINUED)."""
    if status not in FINAL:
        raise ValueError(f"a final status is COMPLETED or DISCONTINUED, not {status!r}")
    attributes.PerformedProcedureStepStatus = status
    return await association.n_set(MPPS, uid, attributes)
