"""Well-known UIDs and UID validation (PS3.5 9, PS3.6 Annex A).

Storage SOP classes are the SOP classes of PS3.6 Annex A whose name ends with
"Storage", from the table that ``tools/generate_sop_classes.py`` generates
out of pydicom's UID dictionary (the core imports no pydicom at run time).
"""

from __future__ import annotations

import re

from dicomnet._sop_classes import SOP_CLASSES

__all__ = [
    "DEFAULT_TRANSFER_SYNTAXES",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "QR_MODELS",
    "STORAGE_SOP_CLASSES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "VERIFICATION_SOP_CLASS",
    "is_valid_uid",
]

IMPLEMENTATION_CLASS_UID = "2.25.211930237455512377358394391373297468719"
"""dicomnet's Implementation Class UID (a UUID-derived UID under 2.25)."""

IMPLEMENTATION_VERSION_NAME = "DICOMNET_010"

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"

UNCOMPRESSED_TRANSFER_SYNTAXES = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)
"""Transfer syntaxes dicomnet converts between (PS3.5 A.1-A.5)."""

DEFAULT_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

ALL_TRANSFER_SYNTAXES = (
    *UNCOMPRESSED_TRANSFER_SYNTAXES,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000_LOSSLESS,
    JPEG_2000,
    RLE_LOSSLESS,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    HTJ2K,
)
"""What a storage SCP accepts by default: it stores bytes, it does not decode them."""

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_STUDY_ONLY_MOVE = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_GET = "1.2.840.10008.5.1.4.1.2.3.3"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_PUSH_INSTANCE = "1.2.840.10008.1.20.1.1"
MPPS = "1.2.840.10008.3.1.2.3.3"

QR_MODELS = {
    "patient": (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET),
    "study": (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET),
    "patient-study": (PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE, PATIENT_STUDY_ONLY_GET),
}
"""Query/Retrieve information models (PS3.4 C.6): (FIND, MOVE, GET) per root."""

STORAGE_SOP_CLASSES = frozenset(
    uid for uid, name in SOP_CLASSES.items() if name.endswith("Storage")
)

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def is_valid_uid(value: str) -> bool:
    """Digits and dots, no empty component, at most 64 characters (PS3.5 9.1).

    PS3.5 also forbids leading zeros in a component; real devices send such
    UIDs, and refusing them would lose their instances, so they pass here.
    Nothing else does, so a UID is always safe in a file name.
    """
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None
