"""DICOM audit messages (PS3.15 Annex A.5), as the XML an audit repository receives.

Theory of operation
-------------------
An audit message answers who did what to which object, when, from where and
with which outcome (PS3.15 A.5.1, the schema derived from RFC 3881):

* ``EventIdentification``: the event ID (CID 400, e.g. 110104 "DICOM
  Instances Transferred"), its action code (C, R, U, D, E), time, outcome
  (0 success, 4 minor failure, 8 serious failure, 12 major failure) and the
  event type codes that refine it (e.g. 110120 "Application Start");
* one ``ActiveParticipant`` per actor: its user ID (an AE title, a process),
  whether it asked for the event, its network access point (an IP address,
  type 2) and its role (CID 402: 110153 Source, 110152 Destination, 110150
  Application...);
* ``AuditSourceIdentification``: the node that reports;
* one ``ParticipantObjectIdentification`` per object: a study (110180
  Study Instance UID, with a ``SOPClass`` count per class), a patient, a
  query (its SOP class and the identifier, base64), a node.

Building a message is a pure function of its values: :func:`audit_message`
returns the XML text, and the helpers below build the parts that the
events of :mod:`dicomnet.services.audit_trail` need. The transport (RFC 5424
syslog over UDP or TLS) is :mod:`dicomnet.services.audit_syslog`.
"""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "EV",
    "Code",
    "Participant",
    "ParticipantObject",
    "audit_message",
    "node_object",
    "patient_object",
    "query_object",
    "study_object",
]


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value: code, scheme designator and meaning (PS3.15 A.5.1, ``csd-code``)."""

    value: str
    scheme: str
    meaning: str

    def element(self, tag: str, parent: ET.Element) -> ET.Element:
        return ET.SubElement(
            parent,
            tag,
            {"csd-code": self.value, "codeSystemName": self.scheme, "originalText": self.meaning},
        )


class EV:
    """The coded values dicomnet's messages use (PS3.16 CID 400-404, RFC 3881)."""

    APPLICATION_ACTIVITY = Code("110100", "DCM", "Application Activity")
    APPLICATION_START = Code("110120", "DCM", "Application Start")
    APPLICATION_STOP = Code("110121", "DCM", "Application Stop")
    INSTANCES_TRANSFERRED = Code("110104", "DCM", "DICOM Instances Transferred")
    BEGIN_TRANSFERRING = Code("110102", "DCM", "Begin Transferring DICOM Instances")
    QUERY = Code("110112", "DCM", "Query")
    SECURITY_ALERT = Code("110113", "DCM", "Security Alert")
    USER_AUTHENTICATION = Code("110114", "DCM", "User Authentication")
    LOGIN = Code("110122", "DCM", "Login")
    LOGOUT = Code("110123", "DCM", "Logout")
    NODE_AUTHENTICATION = Code("110126", "DCM", "Node Authentication")
    USE_OF_RESTRICTED_FUNCTION = Code("110132", "DCM", "Use of Restricted Function")
    APPLICATION = Code("110150", "DCM", "Application")
    APPLICATION_LAUNCHER = Code("110151", "DCM", "Application Launcher")
    DESTINATION = Code("110152", "DCM", "Destination Role ID")
    SOURCE = Code("110153", "DCM", "Source Role ID")
    STUDY_INSTANCE_UID = Code("110180", "DCM", "Study Instance UID")
    SOP_CLASS_UID = Code("110181", "DCM", "SOP Class UID")
    NODE_ID = Code("110182", "DCM", "Node ID")
    PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
    APPLICATION_SERVER = Code("4", "DCM", "Application Server Process")


SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12
"""EventOutcomeIndicator values (PS3.15 A.5.1)."""

NETWORK_ADDRESS_IP = "2"
NETWORK_ADDRESS_NAME = "1"
"""NetworkAccessPointTypeCode: 1 a machine name, 2 an IP address."""


@dataclass(frozen=True, slots=True)
class Participant:
    """An ActiveParticipant: a user, an AE, a process, with where it acted from."""

    user_id: str
    requestor: bool
    role: Code | None = None
    network_access_point: str = ""
    alternative_user_id: str = ""
    user_name: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantObject:
    """A ParticipantObjectIdentification: what the event was about."""

    object_id: str
    type_code: int
    """1 person, 2 system object, 3 organization, 4 other."""
    role: int
    """ParticipantObjectTypeCodeRole: 1 patient, 3 report, 13 security resource, 24 query."""
    id_type: Code
    name: str = ""
    query: bytes = b""
    description: str = ""
    sop_classes: tuple[tuple[str, int], ...] = ()
    """``(SOP Class UID, number of instances)`` pairs of a study."""
    details: tuple[tuple[str, bytes], ...] = field(default=())


def _timestamp(when: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{whole}.{int(when % 1 * 1000):03d}Z"


def audit_message(
    event_id: Code,
    *,
    action: str,
    outcome: int,
    participants: Sequence[Participant],
    source_id: str,
    event_types: Iterable[Code] = (),
    objects: Iterable[ParticipantObject] = (),
    outcome_description: str = "",
    when: float | None = None,
) -> str:
    """The XML of one audit message (PS3.15 A.5.1), without an XML declaration.

    Parameters
    ----------
    event_id : Code
        EventID, from CID 400.
    action : str
        EventActionCode: C create, R read, U update, D delete, E execute.
    outcome : int
        EventOutcomeIndicator: 0, 4, 8 or 12.
    participants : sequence of Participant
        The ActiveParticipants, at least one.
    source_id : str
        AuditSourceID: the node that reports.
    """
    root = ET.Element("AuditMessage")
    event = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": _timestamp(time.time() if when is None else when),
            "EventOutcomeIndicator": str(outcome),
        },
    )
    event_id.element("EventID", event)
    for code in event_types:
        code.element("EventTypeCode", event)
    if outcome_description:
        ET.SubElement(event, "EventOutcomeDescription").text = outcome_description
    for participant in participants:
        attributes = {"UserID": participant.user_id}
        if participant.alternative_user_id:
            attributes["AlternativeUserID"] = participant.alternative_user_id
        if participant.user_name:
            attributes["UserName"] = participant.user_name
        attributes["UserIsRequestor"] = "true" if participant.requestor else "false"
        if participant.network_access_point:
            attributes["NetworkAccessPointID"] = participant.network_access_point
            attributes["NetworkAccessPointTypeCode"] = _access_point_type(
                participant.network_access_point
            )
        element = ET.SubElement(root, "ActiveParticipant", attributes)
        if participant.role is not None:
            participant.role.element("RoleIDCode", element)
    source = ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": source_id})
    EV.APPLICATION_SERVER.element("AuditSourceTypeCode", source)
    for obj in objects:
        element = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": obj.object_id,
                "ParticipantObjectTypeCode": str(obj.type_code),
                "ParticipantObjectTypeCodeRole": str(obj.role),
            },
        )
        obj.id_type.element("ParticipantObjectIDTypeCode", element)
        if obj.name:
            ET.SubElement(element, "ParticipantObjectName").text = obj.name
        if obj.query:
            ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(
                obj.query
            ).decode("ascii")
        for kind, value in obj.details:
            ET.SubElement(
                element,
                "ParticipantObjectDetail",
                {"type": kind, "value": base64.b64encode(value).decode("ascii")},
            )
        if obj.description or obj.sop_classes:
            description = ET.SubElement(element, "ParticipantObjectDescription")
            if obj.description:
                description.text = obj.description
            for uid, count in obj.sop_classes:
                ET.SubElement(
                    description, "SOPClass", {"UID": uid, "NumberOfInstances": str(count)}
                )
    return ET.tostring(root, encoding="unicode")


def _access_point_type(access_point: str) -> str:
    """2 for an IPv4 or IPv6 address, 1 for a machine name."""
    if access_point.replace(".", "").isdigit() or ":" in access_point:
        return NETWORK_ADDRESS_IP
    return NETWORK_ADDRESS_NAME


def study_object(study_uid: str, sop_classes: dict[str, int] | None = None) -> ParticipantObject:
    """A study and how many instances of each SOP class the event touched."""
    return ParticipantObject(
        study_uid,
        2,
        3,
        EV.STUDY_INSTANCE_UID,
        sop_classes=tuple(sorted((sop_classes or {}).items())),
    )


def patient_object(patient_id: str, name: str = "") -> ParticipantObject:
    """A patient, by Patient ID (RFC 3881 "Patient Number")."""
    return ParticipantObject(patient_id, 1, 1, EV.PATIENT_NUMBER, name=name)


def query_object(sop_class_uid: str, identifier: bytes, transfer_syntax: str) -> ParticipantObject:
    """A C-FIND: the information model queried and the identifier as received (A.5.3.12)."""
    return ParticipantObject(
        sop_class_uid,
        2,
        3,
        EV.SOP_CLASS_UID,
        query=identifier,
        details=(("TransferSyntax", transfer_syntax.encode("ascii")),),
    )


def node_object(node: str, description: str) -> ParticipantObject:
    """The node a security alert is about (role 13, security resource), and why."""
    return ParticipantObject(node, 2, 13, EV.NODE_ID, description=description)
