"""TLS options shared by the ``dicomnet`` commands (see :mod:`dicomnet.net.tls`)."""

from __future__ import annotations

from collections.abc import Callable
from ssl import SSLContext
from typing import Any, TypeVar

import click

__all__ = ["client_ssl", "tls_client_options"]

F = TypeVar("F", bound=Callable[..., Any])


def tls_client_options(function: F) -> F:
    """``--tls``, ``--tls-ca``, ``--tls-cert``, ``--tls-key`` for the SCU commands."""
    options = [
        click.option("--tls", is_flag=True, help="Connect over TLS (BCP195 profile)."),
        click.option(
            "--tls-ca",
            type=click.Path(exists=True, dir_okay=False),
            help="CA certificates to check the peer with (default: the system's).",
        ),
        click.option(
            "--tls-cert",
            type=click.Path(exists=True, dir_okay=False),
            help="Our certificate, for peers that ask for one.",
        ),
        click.option(
            "--tls-key", type=click.Path(exists=True, dir_okay=False), help="Our private key."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def client_ssl(options: dict[str, Any]) -> SSLContext | None:
    """The client context the TLS options ask for, or None for plain TCP.

    Pops the four TLS options from ``options`` (the command's keyword arguments).
    """
    tls = options.pop("tls", False)
    ca = options.pop("tls_ca", None)
    cert = options.pop("tls_cert", None)
    key = options.pop("tls_key", None)
    if not (tls or ca or cert):
        return None
    from dicomnet.net.tls import client_context

    return client_context(ca=ca, certificate=cert, key=key or None)
