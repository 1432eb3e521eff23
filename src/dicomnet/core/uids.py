"""Well-known UIDs and UID validation (PS3.5 9, PS3.6 Annex A).

Storage SOP classes come from the table of every SOP class of PS3.6 Annex A
that ``tools/generate_sop_classes.py`` writes out of pydicom's UID dictionary
(:mod:`dicomnet.core._sop_classes`): the protocol core must not import pydicom at
run time, because pydicom's package import pulls in ``socket`` and ``ssl``.
A SOP class counts as storage when its name, up to any " - " qualifier, ends
with "Storage" or "Storage SOP Class": that takes in "Digital X-Ray Image
Storage - For Presentation", the "- Trial" classes and the retired print
storage classes, and leaves out "Storage Commitment Push Model SOP Class". The
one exception is "Media Storage Directory Storage" (the DICOMDIR, PS3.10),
which never travels over a network.
"""

from __future__ import annotations

import re

from dicomnet.core._sop_classes import SOP_CLASSES

__all__ = [
    "ALL_TRANSFER_SYNTAXES",
    "DEFAULT_TRANSFER_SYNTAXES",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "HTJ2K",
    "HTJ2K_LOSSLESS",
    "HTJ2K_LOSSLESS_RPCL",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "JPEG_2000",
    "JPEG_2000_LOSSLESS",
    "JPEG_BASELINE",
    "JPEG_EXTENDED",
    "JPEG_LOSSLESS_SV1",
    "JPEG_LS_LOSSLESS",
    "JPEG_LS_NEAR_LOSSLESS",
    "MEDIA_STORAGE_DIRECTORY_STORAGE",
    "MODALITY_PERFORMED_PROCEDURE_STEP",
    "MODALITY_WORKLIST_FIND",
    "MPPS",
    "PATIENT_ROOT_FIND",
    "PATIENT_ROOT_GET",
    "PATIENT_ROOT_MOVE",
    "PATIENT_STUDY_ONLY_FIND",
    "PATIENT_STUDY_ONLY_GET",
    "PATIENT_STUDY_ONLY_MOVE",
    "QR_MODELS",
    "RLE_LOSSLESS",
    "SOP_CLASSES",
    "STORAGE_COMMITMENT_PUSH",
    "STORAGE_COMMITMENT_PUSH_INSTANCE",
    "STORAGE_SOP_CLASSES",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "VERIFICATION_SOP_CLASS",
    "is_storage_sop_class",
    "is_valid_uid",
]

# -- dicomnet itself (PS3.7 D.3.3.2) -------------------------------------------------
IMPLEMENTATION_CLASS_UID = "2.25.211930237455512377358394391373297468719"
"""dicomnet's Implementation Class UID: a UUID written as a decimal integer under
the 2.25 root (PS3.5 B.2), generated once and fixed here."""

IMPLEMENTATION_VERSION_NAME = "DICOMNET_010"
"""dicomnet's Implementation Version Name (at most 16 characters, PS3.7 D.3.3.2)."""

# -- transfer syntaxes (PS3.5 A.1-A.4, PS3.6 Annex A) --------------------------------
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
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

UNCOMPRESSED_TRANSFER_SYNTAXES = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
)
"""Native pixel data encodings, which dicomnet converts between (PS3.5 A.1-A.5)."""

DEFAULT_TRANSFER_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
"""What a context proposes or accepts unless told otherwise; implicit VR little
endian is the one every DICOM implementation supports (PS3.5 10.1)."""

ALL_TRANSFER_SYNTAXES = (
    *UNCOMPRESSED_TRANSFER_SYNTAXES,
    RLE_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000,
    HTJ2K,
)
"""Every transfer syntax named here, in the order a storage SCP prefers them:
native first, then lossless compression, then lossy, so that a context offering
several never makes the sender compress an image with loss."""

# -- SOP classes (PS3.4) ---------------------------------------------------------------
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
"""Storage Commitment Push Model SOP Class (PS3.4 J.3)."""

STORAGE_COMMITMENT_PUSH_INSTANCE = "1.2.840.10008.1.20.1.1"
"""The well-known SOP Instance of Storage Commitment Push Model (PS3.4 J.3.5)."""

MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"
MPPS = MODALITY_PERFORMED_PROCEDURE_STEP

MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"

QR_MODELS = {
    "patient": (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET),
    "study": (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET),
    "patient-study": (PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE, PATIENT_STUDY_ONLY_GET),
}
"""Query/Retrieve information models (PS3.4 C.6): (FIND, MOVE, GET) per root."""


def _names_storage(name: str) -> bool:
    head = name.split(" - ", 1)[0]
    return head.endswith(("Storage", "Storage SOP Class"))


STORAGE_SOP_CLASSES = frozenset(
    uid
    for uid, name in SOP_CLASSES.items()
    if _names_storage(name) and uid != MEDIA_STORAGE_DIRECTORY_STORAGE
)
"""The storage SOP classes of PS3.6 Annex A (the rule is in the module docstring)."""


def is_storage_sop_class(uid: str) -> bool:
    """Whether ``uid`` is a storage SOP class the standard names (PS3.4 Annex B)."""
    return uid in STORAGE_SOP_CLASSES


_UID_PATTERN = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
"""Components of ASCII digits, no leading zero, separated by single dots."""


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` is a UID as PS3.5 9.1 defines one.

    1 to 64 characters; components of digits separated by single dots, none
    empty, none with a leading zero unless it is exactly ``"0"``. Nothing else
    passes, so a valid UID is also safe as a file name.

    Parameters
    ----------
    value : str
        The candidate, without padding (the codec already drops the one
        trailing NUL or space a peer may add).

    Returns
    -------
    bool
    """
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return False
    return _UID_PATTERN.fullmatch(value) is not None
