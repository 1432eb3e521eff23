"""dicomnet: DICOM networking (PS3.8 Upper Layer, PS3.7 DIMSE) for asyncio.

This module is the public API: everything a user needs is importable from
``dicomnet`` (plus :mod:`dicomnet.sync`, the blocking facade, and
:mod:`dicomnet.testing`, misbehaving peers for testing). The error tree is
imported eagerly; every other name is imported on first use, so that
``import dicomnet`` (which every submodule import runs) stays free of asyncio
and the protocol core stays sans-IO.

The layers beneath (``core``, ``dataset``, ``net``, ``services``,
``archive``, ``cli``) are the implementation; their module paths may change.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dicomnet.errors import (
    AssociationAborted,
    AssociationRejected,
    CommandSetError,
    ConnectionClosed,
    DicomNetError,
    LocalProtocolError,
    PDUError,
    PDUTooLarge,
    PDVError,
    ProtocolError,
    RequestTimeout,
    UnexpectedPDU,
    UnrecognizedPDU,
)

if TYPE_CHECKING:
    from dicomnet.archive.archive import Archive
    from dicomnet.archive.maintenance import reindex, verify
    from dicomnet.archive.stable import StableStudies, StudyStable
    from dicomnet.core.dimse import CommandField, Priority
    from dicomnet.core.status import StatusClass, describe_status, status_class
    from dicomnet.core.uids import (
        EXPLICIT_VR_LITTLE_ENDIAN,
        IMPLICIT_VR_LITTLE_ENDIAN,
        MODALITY_WORKLIST_FIND,
        MPPS,
        PATIENT_ROOT_FIND,
        PATIENT_ROOT_GET,
        PATIENT_ROOT_MOVE,
        STORAGE_COMMITMENT_PUSH,
        STUDY_ROOT_FIND,
        STUDY_ROOT_GET,
        STUDY_ROOT_MOVE,
        VERIFICATION_SOP_CLASS,
    )
    from dicomnet.net.addresses import BindError
    from dicomnet.net.association import Association, IncomingRequest, Reply
    from dicomnet.net.client import AssociationTimeouts, ClientConnection, connect
    from dicomnet.net.listener import IPType, Listener, ListenerLimits, ServerAssociation
    from dicomnet.net.operations import NResult, QueryResponse
    from dicomnet.net.provider import (
        DatasetSink,
        FileDatasetSink,
        StoreEvent,
        StoreObserver,
        StoreProvider,
    )
    from dicomnet.net.requests import OutgoingRequest, RequestTimeouts
    from dicomnet.net.retrieve import MoveDestination, SubOperations, get_contexts
    from dicomnet.net.store_client import NoAcceptedContext
    from dicomnet.net.tls import client_context, server_context
    from dicomnet.services.commitment import (
        CommitmentProvider,
        CommitmentResult,
        CommitmentWaiter,
        commitment_contexts,
        request_commitment,
    )
    from dicomnet.services.discard import DiscardStorage
    from dicomnet.services.mpps import (
        MPPSProvider,
        complete_procedure_step,
        start_procedure_step,
    )
    from dicomnet.services.storage import FolderStorage, StoredInstance
    from dicomnet.services.store_events import EventLog
    from dicomnet.services.worklist import WorklistProvider

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    # the client and the listener
    "connect": "dicomnet.net.client",
    "ClientConnection": "dicomnet.net.client",
    "AssociationTimeouts": "dicomnet.net.client",
    "Listener": "dicomnet.net.listener",
    "ListenerLimits": "dicomnet.net.listener",
    "IPType": "dicomnet.net.listener",
    "ServerAssociation": "dicomnet.net.listener",
    "BindError": "dicomnet.net.addresses",
    # associations and requests
    "Association": "dicomnet.net.association",
    "IncomingRequest": "dicomnet.net.association",
    "OutgoingRequest": "dicomnet.net.requests",
    "Reply": "dicomnet.net.association",
    "RequestTimeouts": "dicomnet.net.requests",
    "QueryResponse": "dicomnet.net.operations",
    "NResult": "dicomnet.net.operations",
    "MoveDestination": "dicomnet.net.retrieve",
    "SubOperations": "dicomnet.net.retrieve",
    "get_contexts": "dicomnet.net.retrieve",
    "NoAcceptedContext": "dicomnet.net.store_client",
    "client_context": "dicomnet.net.tls",
    "server_context": "dicomnet.net.tls",
    # service providers
    "FolderStorage": "dicomnet.services.storage",
    "StoredInstance": "dicomnet.services.storage",
    "DiscardStorage": "dicomnet.services.discard",
    "StoreEvent": "dicomnet.net.provider",
    "StoreObserver": "dicomnet.net.provider",
    "DatasetSink": "dicomnet.net.provider",
    "FileDatasetSink": "dicomnet.net.provider",
    "StoreProvider": "dicomnet.net.provider",
    "EventLog": "dicomnet.services.store_events",
    "CommitmentProvider": "dicomnet.services.commitment",
    "CommitmentResult": "dicomnet.services.commitment",
    "CommitmentWaiter": "dicomnet.services.commitment",
    "commitment_contexts": "dicomnet.services.commitment",
    "request_commitment": "dicomnet.services.commitment",
    "MPPSProvider": "dicomnet.services.mpps",
    "start_procedure_step": "dicomnet.services.mpps",
    "complete_procedure_step": "dicomnet.services.mpps",
    "WorklistProvider": "dicomnet.services.worklist",
    # the archive
    "Archive": "dicomnet.archive.archive",
    "StableStudies": "dicomnet.archive.stable",
    "StudyStable": "dicomnet.archive.stable",
    "verify": "dicomnet.archive.maintenance",
    "reindex": "dicomnet.archive.maintenance",
    # DIMSE vocabulary: command fields, priorities, statuses, UIDs
    "CommandField": "dicomnet.core.dimse",
    "Priority": "dicomnet.core.dimse",
    "StatusClass": "dicomnet.core.status",
    "status_class": "dicomnet.core.status",
    "describe_status": "dicomnet.core.status",
    "VERIFICATION_SOP_CLASS": "dicomnet.core.uids",
    "IMPLICIT_VR_LITTLE_ENDIAN": "dicomnet.core.uids",
    "EXPLICIT_VR_LITTLE_ENDIAN": "dicomnet.core.uids",
    "PATIENT_ROOT_FIND": "dicomnet.core.uids",
    "PATIENT_ROOT_MOVE": "dicomnet.core.uids",
    "PATIENT_ROOT_GET": "dicomnet.core.uids",
    "STUDY_ROOT_FIND": "dicomnet.core.uids",
    "STUDY_ROOT_MOVE": "dicomnet.core.uids",
    "STUDY_ROOT_GET": "dicomnet.core.uids",
    "MODALITY_WORKLIST_FIND": "dicomnet.core.uids",
    "MPPS": "dicomnet.core.uids",
    "STORAGE_COMMITMENT_PUSH": "dicomnet.core.uids",
}
"""Public name -> the module that defines it, imported on first use."""

__all__ = [
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "MODALITY_WORKLIST_FIND",
    "MPPS",
    "PATIENT_ROOT_FIND",
    "PATIENT_ROOT_GET",
    "PATIENT_ROOT_MOVE",
    "STORAGE_COMMITMENT_PUSH",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "VERIFICATION_SOP_CLASS",
    "Archive",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "AssociationTimeouts",
    "BindError",
    "ClientConnection",
    "CommandField",
    "CommandSetError",
    "CommitmentProvider",
    "CommitmentResult",
    "CommitmentWaiter",
    "ConnectionClosed",
    "DatasetSink",
    "DicomNetError",
    "DiscardStorage",
    "EventLog",
    "FileDatasetSink",
    "FolderStorage",
    "IPType",
    "IncomingRequest",
    "Listener",
    "ListenerLimits",
    "LocalProtocolError",
    "MPPSProvider",
    "MoveDestination",
    "NResult",
    "NoAcceptedContext",
    "OutgoingRequest",
    "PDUError",
    "PDUTooLarge",
    "PDVError",
    "Priority",
    "ProtocolError",
    "QueryResponse",
    "Reply",
    "RequestTimeout",
    "RequestTimeouts",
    "ServerAssociation",
    "StableStudies",
    "StatusClass",
    "StoreEvent",
    "StoreObserver",
    "StoreProvider",
    "StoredInstance",
    "StudyStable",
    "SubOperations",
    "UnexpectedPDU",
    "UnrecognizedPDU",
    "WorklistProvider",
    "__version__",
    "client_context",
    "commitment_contexts",
    "complete_procedure_step",
    "connect",
    "describe_status",
    "get_contexts",
    "reindex",
    "request_commitment",
    "server_context",
    "start_procedure_step",
    "status_class",
    "verify",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
