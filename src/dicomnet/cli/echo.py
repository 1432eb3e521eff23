"""``dicomnet echo``: C-ECHO (PS3.4 A), as DCMTK's echoscu."""

from __future__ import annotations

from typing import Any

import click

from dicomnet.cli.common import fail, run
from dicomnet.cli.network import connection_kwargs, network_options, proposed
from dicomnet.cli.tls_options import client_ssl, tls_client_options
from dicomnet.core.uids import VERIFICATION_SOP_CLASS
from dicomnet.errors import DicomNetError
from dicomnet.net import client

__all__ = ["echo"]


@click.command()
@click.option("--aet", default="DICOMNET", show_default=True, help="Our (calling) AE title.")
@click.option("--aec", default="ANY-SCP", show_default=True, help="The peer's (called) AE title.")
@click.option("--repeat", default=1, show_default=True, help="C-ECHO requests to send.")
@network_options
@tls_client_options
@click.argument("host")
@click.argument("port", type=int)
def echo(aet: str, aec: str, repeat: int, host: str, port: int, **options: Any) -> None:
    """Verify a peer with C-ECHO."""
    network = connection_kwargs(options, default_dimse=30.0)
    syntaxes = network.pop("propose")
    context = client_ssl(options)

    async def exchange() -> int:
        async with client.connect(
            host,
            port,
            called_ae_title=aec,
            calling_ae_title=aet,
            ssl=context,
            contexts=[(VERIFICATION_SOP_CLASS, proposed(syntaxes))] if syntaxes else None,
            **network,
        ) as assoc:
            status = 0
            for _ in range(repeat):
                status = (await assoc.echo()).status
                if status != 0:
                    break
            return int(status)

    try:
        status = run(exchange())
    except DicomNetError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot reach {host}:{port}: {exc}")
    if status != 0:
        fail(f"C-ECHO answered status 0x{status:04X}")
    click.echo(f"C-ECHO to {aec} at {host}:{port}: success")
