"""The ``dicomnet`` command line.

Each command exits 0 on success and non-zero with one line on standard error
saying why otherwise (refused, rejected with its reason, timed out).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click

from dicomnet import __version__, client, codec
from dicomnet.association import RequestTimeouts
from dicomnet.client import AssociationTimeouts
from dicomnet.errors import DicomNetError
from dicomnet.server import IPType, Listener, ListenerLimits

__all__ = ["main"]

IP_TYPES = {"ipv4": IPType.IPV4, "ipv6": IPType.IPV6, "both": IPType.IPV4_OR_IPV6}


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when it is installed (``dicomnet[speed]``), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"dicomnet: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(__version__, prog_name="dicomnet")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """DICOM networking: echo, listen, store, find, move, get."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def info() -> None:
    """Print the version and the codec in use (cython or python)."""
    click.echo(f"dicomnet {__version__}, codec {codec.IMPLEMENTATION}")


@main.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for each step.")
@click.option("--repeat", default=1, show_default=True, help="C-ECHO requests to send.")
@click.argument("host")
@click.argument("port", type=int)
def echo(aet: str, aec: str, timeout: float, repeat: int, host: str, port: int) -> None:
    """Verify a peer with C-ECHO."""

    async def run() -> int:
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            timeouts=RequestTimeouts(timeout, timeout, timeout, None),
            association_timeouts=AssociationTimeouts(timeout, timeout, timeout),
        ) as assoc:
            status = 0
            for _ in range(repeat):
                status = (await assoc.echo()).status
                if status != 0:
                    break
            return int(status)

    try:
        status = _run(run())
    except DicomNetError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot reach {host}:{port}: {exc}")
    if status != 0:
        _fail(f"C-ECHO answered status 0x{status:04X}")
    click.echo(f"C-ECHO to {aec} at {host}:{port}: success")


@main.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our AE title.")
@click.option("--host", default="*", show_default=True, help='"*" every interface, "" this machine\'s address.')
@click.option("--port", default=11112, show_default=True, help="0 takes the first free port.")
@click.option("--ip-type", type=click.Choice(sorted(IP_TYPES)), default="ipv4", show_default=True)
@click.option("--max-associations", default=64, show_default=True, help="0 = no cap.")
@click.option("--backlog", default=128, show_default=True, help="listen() backlog.")
@click.option("--require-called-aet", is_flag=True, help="Reject requests not addressed to --aet.")
def listen(
    aet: str,
    host: str,
    port: int,
    ip_type: str,
    max_associations: int,
    backlog: int,
    require_called_aet: bool,
) -> None:
    """Run a listener (SCP) until SIGINT or SIGTERM."""

    async def run() -> None:
        listener = Listener(
            aet,
            require_called_ae_title=require_called_aet,
            limits=ListenerLimits(max_associations=max_associations),
        )
        await listener.listen(host, port, backlog, IP_TYPES[ip_type])
        for address, bound_port in listener.addresses:
            shown = f"[{address}]" if ":" in address else address
            click.echo(f"listening on {shown}:{bound_port}", nl=True)
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await listener.close()

    try:
        _run(run())
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc}")


if __name__ == "__main__":  # pragma: no cover
    main()
