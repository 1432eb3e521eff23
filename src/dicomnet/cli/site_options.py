"""The flags of ``dicomnet listen`` that run a site (:mod:`dicomnet.cli.site`).

Kept apart from :mod:`dicomnet.cli.site` so that the service (which starts the
site) and the command line (which parses these flags) import in one direction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from dicomnet.cli.common import BYTE_SIZE

__all__ = ["site_options"]

_F = TypeVar("_F", bound=Callable[..., Any])


def site_options(command: _F) -> _F:
    """The site flags of ``dicomnet listen`` (docs/archive.md, "Running a site")."""
    options = [
        click.option(
            "--max-storage",
            type=BYTE_SIZE,
            help="Keep at most this many bytes of datasets: the oldest studies go first.",
        ),
        click.option(
            "--keep-days",
            type=click.FloatRange(min=0),
            help="Delete studies whose last instance arrived more than N days ago.",
        ),
        click.option(
            "--prune-interval",
            type=click.FloatRange(min=0.1),
            default=60.0,
            show_default=True,
            help="Seconds between two retention passes.",
        ),
        click.option(
            "--study-stable-after",
            type=click.FloatRange(min=0),
            default=60.0,
            show_default=True,
            help="Seconds without a new instance before a study is stable (never pruned before).",
        ),
        click.option(
            "--exec-on-study",
            help="Run this command when a study is stable; {study_uid} {folder} {instances}"
            " {calling_ae} {patient_id} are replaced in its arguments (no shell).",
        ),
        click.option(
            "--exec-on-instance",
            help="Run this command for each instance stored; {path} {sop_instance_uid}"
            " {sop_class_uid} {study_uid} {series_uid} {folder} {calling_ae} {called_ae}"
            " {peer} {transfer_syntax} (no shell).",
        ),
        click.option(
            "--exec-timeout",
            type=click.FloatRange(min=0.1),
            default=60.0,
            show_default=True,
            help="Seconds a hook may run before it is killed.",
        ),
        click.option(
            "--exec-concurrency",
            type=click.IntRange(1, 256),
            default=4,
            show_default=True,
            help="Hooks running at once.",
        ),
        click.option(
            "--exec-queue",
            type=click.IntRange(1),
            default=1000,
            show_default=True,
            help="Hook runs waiting at most; more are dropped and counted.",
        ),
        click.option(
            "--unknown-peers",
            type=click.Choice(["allow", "refuse"]),
            default="allow",
            show_default=True,
            help="Calling AE titles not in the [listen.peers] table: allowed or refused (1,1,3).",
        ),
        click.option(
            "--forward",
            multiple=True,
            metavar="AET=HOST:PORT",
            help="Forward every instance stored to this destination (repeatable); TOML"
            " [[listen.forward-rules]] narrow by calling AE, modality, SOP class.",
        ),
        click.option(
            "--forward-associations",
            type=click.IntRange(1, 64),
            default=2,
            show_default=True,
            help="Associations per forward destination.",
        ),
        click.option(
            "--forward-window",
            type=click.IntRange(1, 256),
            default=8,
            show_default=True,
            help="C-STOREs outstanding on each forwarding association.",
        ),
        click.option(
            "--forward-retry-max",
            type=click.FloatRange(min=0.1),
            default=300.0,
            show_default=True,
            help="Longest wait between two tries of a forward, seconds.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
