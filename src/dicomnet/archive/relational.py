"""Relational queries and retrievals, only where they were negotiated (PS3.4 C.4.1.2, C.5).

Theory of operation
-------------------
A Query/Retrieve SCP answers hierarchical requests unless the requestor
proposed, and the SCP accepted, relational queries (C-FIND) or relational
retrieval (C-MOVE, C-GET) by SOP Class Extended Negotiation (PS3.4 C.5.1.1,
C.5.2.1, C.5.3.1: byte 1 of the application information). The archive
accepts relational service whenever it is asked for, and declines the other
options of the item (date-time matching, fuzzy semantic matching of person
names, timezone adjustment, enhanced multi-frame conversion), answering 0
for each byte the requestor sent.

Hierarchical means (PS3.4 C.4.1.2.1, C.4.2.2.1): the level is one of the
information model's, and the unique key of every level above it is in the
identifier with a single value (no wildcard, no list). A request that
breaks this without relational service answers A900 (identifier does not
match SOP class).
"""

from __future__ import annotations

from typing import Any

from dicomnet.core.pdu import SOPClassExtendedNegotiation
from dicomnet.core.uids import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    PATIENT_STUDY_ONLY_FIND,
    PATIENT_STUDY_ONLY_GET,
    PATIENT_STUDY_ONLY_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)

__all__ = [
    "MODEL_LEVELS",
    "RELATIONAL",
    "extended_answer",
    "hierarchical_problem",
    "relational_agreed",
    "relational_request",
]

MODEL_LEVELS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET),
        ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    ),
    **dict.fromkeys(
        (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET), ("STUDY", "SERIES", "IMAGE")
    ),
    **dict.fromkeys(
        (PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE, PATIENT_STUDY_ONLY_GET),
        ("PATIENT", "STUDY"),
    ),
}
"""The levels of each Query/Retrieve information model, top first (PS3.4 C.6)."""

UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}

RELATIONAL = 1
"""Byte 1 of the application information: relational queries or retrieval."""


def relational_request(sop_class_uid: str) -> SOPClassExtendedNegotiation:
    """The item a requestor sends to ask for relational service on a Q/R model."""
    return SOPClassExtendedNegotiation(sop_class_uid, bytes([RELATIONAL]))


def extended_answer(item: SOPClassExtendedNegotiation) -> bytes | None:
    """The archive's answer: relational service as asked, every other option declined.

    No answer (None) for SOP classes that are not Query/Retrieve models.
    """
    if item.sop_class_uid not in MODEL_LEVELS:
        return None
    asked = bytes(item.application_info)
    if not asked:
        return None
    return bytes([RELATIONAL if asked[0] == RELATIONAL else 0]) + bytes(len(asked) - 1)


def relational_agreed(negotiated: Any, sop_class_uid: str) -> bool:
    """Whether relational service was negotiated for this model on this association."""
    answer = negotiated.sop_class_extended.get(sop_class_uid, b"")
    return bool(answer) and answer[0] == RELATIONAL


def _single_value(value: Any) -> bool:
    text = "" if value is None else str(value)
    return bool(text.strip()) and not any(c in text for c in "*?\\")


def hierarchical_problem(identifier: Any, level: str, sop_class_uid: str) -> str | None:
    """Why a request is not hierarchical, or None when it is (PS3.4 C.4.1.2.1)."""
    levels = MODEL_LEVELS.get(sop_class_uid)
    if levels is None:
        return None
    if level not in levels:
        return f"level {level} is not in the information model"
    for above in levels[: levels.index(level)]:
        keyword = UNIQUE_KEYS[above]
        element = identifier.get(keyword)
        if element is None or not _single_value(element):
            return f"no single value for {keyword} (relational queries were not negotiated)"
    return None
