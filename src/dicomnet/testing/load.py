"""Many concurrent SCUs storing into one SCP: the load test and the soak.

:func:`store_load` opens ``associations`` associations at once, each storing
``per_association`` instances with distinct SOP Instance UIDs, and returns
what every C-STORE was answered. The instances are made from one encoded CT
template by changing the UIDs in place (same length), so generating 10,000
of them costs nothing next to sending them, and the load is the SCP's.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

from dicomnet.errors import DicomNetError

__all__ = ["LoadResult", "instance_uid", "store_load"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_ROOT = "1.2.826.0.1.3680043.10.1341.77"


def instance_uid(run: int, association: int, index: int) -> str:
    """The SOP Instance UID of one instance of a load run.

    Fixed length (components offset rather than zero-padded: a UID component
    may not start with 0), so it can replace another in encoded bytes.
    """
    return f"{_ROOT}.{100000 + run}.{10000 + association}.{100000 + index}"


def _study_uid(run: int) -> str:
    return f"{_ROOT}.1.{100000 + run}"


def _series_uid(run: int, association: int) -> str:
    return f"{_ROOT}.2.{100000 + run}.{10000 + association}"


@dataclass
class LoadResult:
    """What a load run was answered."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    """Count of each final C-STORE status."""
    errors: list[str] = field(default_factory=list)
    """Associations that failed, with the error (rejected, aborted, timed out)."""
    stored: list[str] = field(default_factory=list)
    """SOP Instance UIDs answered Success (0000) or Warning (Bxxx)."""
    seconds: float = 0.0

    @property
    def instances(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        """Instances answered per second."""
        return self.instances / self.seconds if self.seconds else 0.0


def _template(pixels: int) -> tuple[bytes, str, str]:
    """An encoded CT dataset with placeholder UIDs to replace."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    from dicomnet.dataset.encoding import encode_dataset

    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = instance_uid(0, 0, 0)
    ds.StudyInstanceUID = _study_uid(0)
    ds.SeriesInstanceUID = _series_uid(0, 0)
    ds.Modality = "CT"
    ds.PatientName = "LOAD^TEST"
    ds.PatientID = "LOAD"
    ds.Rows = ds.Columns = pixels
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (pixels * pixels * 2 // 256) + bytes(
        pixels * pixels * 2 % 256
    )
    return (
        encode_dataset(ds, ExplicitVRLittleEndian),
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
    )


async def store_load(
    host: str,
    port: int,
    *,
    associations: int = 200,
    per_association: int = 50,
    run: int = 1,
    pixels: int = 64,
    called_ae_title: str = "ANY-SCP",
    connect_timeout: float = 60.0,
) -> LoadResult:
    """Store ``per_association`` instances on each of ``associations`` associations at once.

    ``run`` (1 or more) makes the UIDs of one run distinct from every other
    run's (a soak calls this repeatedly). Each association is one series of one study
    per run. Returns the statuses; an association that fails is listed in
    :attr:`LoadResult.errors` and the instances it did not send are missing
    from the counts.
    """
    from dicomnet.net import client
    from dicomnet.net.client import AssociationTimeouts

    template, study, series = _template(pixels)
    first = instance_uid(0, 0, 0).encode()
    result = LoadResult()

    async def one(association: int) -> None:
        series_uid = _series_uid(run, association).encode()
        study_uid = _study_uid(run).encode()
        base = template.replace(series.encode(), series_uid).replace(study.encode(), study_uid)
        try:
            async with client.connect(
                host,
                port,
                called_ae_title=called_ae_title,
                calling_ae_title=f"LOAD{association:05d}",
                contexts=[(CT_IMAGE_STORAGE, [EXPLICIT_VR_LITTLE_ENDIAN])],
                association_timeouts=AssociationTimeouts(connect=connect_timeout),
            ) as assoc:
                for index in range(per_association):
                    uid = instance_uid(run, association, index)
                    data = base.replace(first, uid.encode())
                    response = await assoc.store(
                        data,
                        sop_class_uid=CT_IMAGE_STORAGE,
                        sop_instance_uid=uid,
                        transfer_syntax=EXPLICIT_VR_LITTLE_ENDIAN,
                    )
                    status = int(response.status)
                    result.statuses[status] += 1
                    if status == 0 or status >> 12 == 0xB:
                        result.stored.append(uid)
        except DicomNetError as exc:
            result.errors.append(f"association {association}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(one(a) for a in range(associations)))
    result.seconds = time.perf_counter() - started
    return result
