"""The open-file limit a listener needs, raised at start where the system allows.

Every C-STORE a listener serves holds a file open from its command to its
answer, so one association can hold as many files as its asynchronous
operations window, beside its socket. Under the default caps (64
associations, a window of 64) that is over 4,000 descriptors, while many
systems start services with a soft limit of 1,024 (systemd's default, and a
login shell's): past it, ``open`` fails with EMFILE and instances are
answered A700. The soft limit may be raised up to the hard one without
privileges, as servers commonly do at start.
"""

from __future__ import annotations

import logging

__all__ = ["SPARE_FILES", "needed_open_files", "raise_open_files_limit"]

log = logging.getLogger("dicomnet.cli.open_files")

SPARE_FILES = 256
"""Descriptors beside the associations': files made ahead, the index, logs, the
listening sockets, worker pipes."""


def needed_open_files(max_associations: int, window: int) -> int | None:
    """Descriptors the caps allow at once; None when associations are uncapped."""
    if max_associations <= 0:
        return None
    return max_associations * (max(window, 1) + 1) + SPARE_FILES


def raise_open_files_limit(needed: int | None) -> int:
    """Raise this process's soft open-file limit to ``needed`` (to the hard limit when
    None or above it); the soft limit now in force. Warns when it stays short."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: no such limit to raise
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    target = hard if needed is None else needed
    if hard != infinite:
        target = min(target, hard)
    if soft == infinite or (target != infinite and soft >= target):
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    if needed is not None and target < needed:
        log.warning(
            "open-file limit %d is below the %d the association caps allow: instances past it"
            " are answered A700 (raise the hard limit, or lower --max-associations)",
            target,
            needed,
        )
    return target
