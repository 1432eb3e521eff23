"""What ``dicomnet store`` does around the transfer: skipping, proposing, reporting.

* Files that are not DICOM (no ``DICM`` prefix at offset 128) and DICOMDIR
  files (Media Storage Directory, PS3.10 8.6) are skipped with a warning, not
  counted as failures, as DCMTK's storescu does when it scans folders.
* ``--propose`` gives the transfer syntaxes to offer for each SOP class; a
  compressed file whose syntax is not among them is still offered in its own,
  since dicomnet converts only among the uncompressed syntaxes.
* ``--report FILE`` writes one JSON line per file: path, SOP class and
  instance, status and outcome (``success``, ``warning``, ``failure`` or
  ``skipped``) and the error text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from dicomnet.core.status import StatusClass, status_class
from dicomnet.core.uids import UNCOMPRESSED_TRANSFER_SYNTAXES

__all__ = ["MEDIA_STORAGE_DIRECTORY", "Report", "contexts_for", "split_skipped"]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""The SOP class of a DICOMDIR (PS3.4 Annex F)."""


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return True  # unreadable: a failure with its reason, not a skip


def split_skipped(
    jobs: Sequence[Any], unreadable: Sequence[tuple[Path, str]]
) -> tuple[list[Any], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(jobs to send, failures, skipped files with why)."""
    skipped: list[tuple[Path, str]] = []
    failed: list[tuple[Path, str]] = []
    for path, reason in unreadable:
        if path.is_file() and not _is_dicom(path):
            skipped.append((path, "not a DICOM file"))
        else:
            failed.append((path, reason))
    kept = []
    for job in jobs:
        if job.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
            skipped.append((job.path, "a DICOMDIR, not an instance"))
        else:
            kept.append(job)
    return kept, failed, skipped


def contexts_for(jobs: Iterable[Any], propose: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Per SOP class: the proposed syntaxes, then the files' own compressed ones."""
    own: dict[str, list[str]] = {}
    for job in jobs:
        syntaxes = own.setdefault(job.sop_class_uid, [])
        if job.transfer_syntax not in syntaxes:
            syntaxes.append(job.transfer_syntax)
    contexts: list[tuple[str, list[str]]] = []
    for sop_class, syntaxes in own.items():
        contexts.append((sop_class, list(propose)))
        unconvertible = [
            s for s in syntaxes if s not in propose and s not in UNCOMPRESSED_TRANSFER_SYNTAXES
        ]
        if unconvertible:
            contexts.append((sop_class, unconvertible))
    return contexts


def outcome_of(status: int | None, error: str | None) -> str:
    if error is not None or status is None:
        return "failure"
    kind = status_class(status)
    if kind is StatusClass.SUCCESS:
        return "success"
    return "warning" if kind is StatusClass.WARNING else "failure"


class Report:
    """The ``--report`` file: one JSON object per line, flushed as it goes."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self._stream: IO[str] | None = open(path, "w", encoding="utf-8") if path else None

    @property
    def active(self) -> bool:
        """Whether a report file is being written (else per-file work is skipped)."""
        return self._stream is not None

    def write(
        self,
        path: Path,
        *,
        sop_class_uid: str | None = None,
        sop_instance_uid: str | None = None,
        status: int | None = None,
        outcome: str,
        error: str | None = None,
    ) -> None:
        if self._stream is None:
            return
        line = {
            "path": os.fspath(path),
            "sop_class_uid": sop_class_uid,
            "sop_instance_uid": sop_instance_uid,
            "status": status,
            "outcome": outcome,
            "error": error,
        }
        self._stream.write(json.dumps(line) + "\n")
        self._stream.flush()

    def job(self, job: Any, status: int | None, error: str | None) -> None:
        meta = getattr(job, "file_meta", None)
        self.write(
            job.path,
            sop_class_uid=job.sop_class_uid,
            sop_instance_uid=meta.sop_instance_uid if meta is not None else None,
            status=status,
            outcome=outcome_of(status, error),
            error=error,
        )

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
