"""What every ``dicomnet`` command shares: the event loop it runs on and how it fails."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

__all__ = ["BYTE_SIZE", "ByteSize", "fail", "run", "size_text"]


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop where it is installed (a dependency on CPython outside
    Windows), else on asyncio's own loop; ``DICOMNET_NO_UVLOOP=1`` forces the
    latter, which stays the tested fallback."""
    if os.environ.get("DICOMNET_NO_UVLOOP", "") == "1":
        return asyncio.run(coroutine)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on standard error saying why, and a non-zero exit."""
    click.echo(f"dicomnet: {message}", err=True)
    sys.exit(code)


class ByteSize(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A byte count written ``8589934592``, ``8G``, ``512M`` or ``64K`` (powers of 1024)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from dicomnet.cli.listen_service import parse_size

        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


BYTE_SIZE = ByteSize()


def size_text(value: int) -> str:
    """``8G`` for 8 GiB: a byte count as a flag's help shows it (the largest exact unit)."""
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)
