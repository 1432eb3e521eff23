"""Modality Performed Procedure Step (PS3.4 F.7): N-CREATE, then N-SET until final.

Theory of operation
-------------------
A modality creates a procedure step with N-CREATE when it starts (status IN
PROGRESS) and updates it with N-SET; once set to COMPLETED or DISCONTINUED
it is final and every later N-SET is refused. :class:`MPPSProvider`
enforces that; it keeps the steps in memory and, given a folder, also as one
DICOM JSON file per step (``<SOP Instance UID>.json``, PS3.18 F), written
to a temporary name and renamed, so they survive a restart and other tools
can read them.

Statuses (PS3.4 F.7.2, PS3.7 10.1.3 and 10.1.5):

* N-CREATE of an instance that exists: 0x0111 (duplicate SOP instance).
* N-CREATE without Performed Procedure Step Status: 0x0120 (missing
  attribute), with an Error Comment.
* N-CREATE with a status other than IN PROGRESS: 0x0106 (invalid attribute
  value), the offending value in the response's attribute list.
* N-SET of an unknown instance: 0x0112 (no such SOP instance).
* N-SET of a COMPLETED or DISCONTINUED step: 0x0110 (processing failure)
  with Error Comment "Performed Procedure Step Object may no longer be
  updated" and Error ID 0xA710 (PS3.4 Table F.7.2-2).
* N-SET to a status other than IN PROGRESS, COMPLETED or DISCONTINUED:
  0x0106, as for N-CREATE.

0xC310, which is sometimes quoted for the final-state case, is the Unified
Procedure Step status "the UPS is not in the IN PROGRESS state" (PS3.4
CC.2.6); MPPS uses the processing failure with Error ID A710.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dicomnet.core.dimse import CommandField
from dicomnet.core.status import (
    DUPLICATE_SOP_INSTANCE,
    INVALID_ATTRIBUTE_VALUE,
    INVALID_OBJECT_INSTANCE,
    MISSING_ATTRIBUTE,
    NO_SUCH_SOP_INSTANCE,
    PROCESSING_FAILURE,
    SUCCESS,
)
from dicomnet.core.uids import MPPS, is_valid_uid
from dicomnet.net.association import IncomingRequest, Reply

__all__ = ["MPPSProvider", "complete_procedure_step", "start_procedure_step"]

IN_PROGRESS = "IN PROGRESS"
FINAL = frozenset({"COMPLETED", "DISCONTINUED"})
STATES = FINAL | {IN_PROGRESS}

NO_LONGER_UPDATABLE_ID = 0xA710
"""An Error ID (0000,0903) value, not a status: sent with 0110 (PS3.4 F.7.2.2)."""
NO_LONGER_UPDATABLE = "Performed Procedure Step Object may no longer be updated"


def _invalid_status(value: Any, comment: str) -> Reply:
    """0x0106 with the offending value in the attribute list (PS3.7 C.4.2)."""
    from pydicom.dataset import Dataset

    invalid = Dataset()
    invalid.PerformedProcedureStepStatus = value
    return Reply(INVALID_ATTRIBUTE_VALUE, invalid, {"error_comment": comment})


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
        """Serve N-CREATE and N-SET of the MPPS SOP class on ``listener``."""
        listener.support(MPPS)
        listener.handle(CommandField.N_CREATE_RQ, self.create)
        listener.handle(CommandField.N_SET_RQ, self.update)

    async def create(self, request: IncomingRequest) -> Reply | int:
        """The N-CREATE handler: a new step, IN PROGRESS."""
        from pydicom.dataset import Dataset
        from pydicom.uid import generate_uid

        uid = request.message.affected_sop_instance_uid or str(generate_uid())
        if not is_valid_uid(uid):
            return INVALID_OBJECT_INSTANCE
        if uid in self.steps:
            return DUPLICATE_SOP_INSTANCE
        step = request.dataset if request.dataset is not None else Dataset()
        status = step.get("PerformedProcedureStepStatus")
        if status is None or status == "":
            return Reply(
                MISSING_ATTRIBUTE,
                None,
                {"error_comment": "Performed Procedure Step Status (0040,0252) is required"},
            )
        if str(status) != IN_PROGRESS:
            return _invalid_status(status, "a procedure step is created IN PROGRESS")
        self.steps[uid] = step
        self._save(uid)
        return Reply(SUCCESS, step, {"affected_sop_instance_uid": uid})

    async def update(self, request: IncomingRequest) -> Reply | int:
        """The N-SET handler: change a step that is not final yet."""
        uid = request.message.requested_sop_instance_uid
        step = self.steps.get(uid)
        if step is None:
            return NO_SUCH_SOP_INSTANCE
        if str(step.get("PerformedProcedureStepStatus", "")) in FINAL:
            return Reply(
                PROCESSING_FAILURE,
                None,
                {"error_comment": NO_LONGER_UPDATABLE, "error_id": NO_LONGER_UPDATABLE_ID},
            )
        changes = request.dataset
        if changes is not None:
            status = changes.get("PerformedProcedureStepStatus")
            if status is not None and str(status) not in STATES:
                return _invalid_status(status, f"unknown status {status}")
            for element in changes:
                step[element.tag] = element
        self._save(uid)
        return Reply(SUCCESS, step)

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
    """N-CREATE an MPPS instance IN PROGRESS; the :class:`~dicomnet.net.operations.NResult`.

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
