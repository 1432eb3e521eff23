"""What every ``dicomnet`` command shares: the event loop it runs on and how it fails."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

__all__ = ["BYTE_SIZE", "ByteSize", "fail", "run"]


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (``dicomnet[speed]``), else asyncio."""
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
    _units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        number, unit = (text[:-1], text[-1]) if text[-1:].isalpha() else (text, "")
        if number.isdigit() and unit in self._units:
            return int(number) * self._units[unit]
        self.fail(f"{value!r} is not a size such as 1048576, 512M or 8G", param, ctx)


BYTE_SIZE = ByteSize()
