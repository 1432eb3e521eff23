"""``dicomnet listen`` at the site's edge: the PROXY protocol and the audit trail.

The flags (``--proxy-protocol``, ``--trusted-proxy``, ``--audit-syslog``,
``--audit-transport``, ``--audit-tls-ca``, ``--audit-source-id``) and what
:func:`dicomnet.cli.listen_service.serve` calls to set them up and tear
them down, kept apart from the archive's own settings.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["Edge", "edge_options"]

F = TypeVar("F", bound=Callable[..., Any])


def _check_trusted(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[str, ...]:
    from dicomnet.net.proxy import ProxyPolicy

    entries = tuple(value or ())
    try:
        ProxyPolicy.from_strings(entries)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return entries


def _check_collector(ctx: click.Context, param: click.Parameter, value: Any) -> str | None:
    if value:
        try:
            parse_host_port(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
    return value or None


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT``."""
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def edge_options(function: F) -> F:
    """The PROXY protocol and audit flags of ``dicomnet listen``."""
    options = [
        click.option(
            "--proxy-protocol",
            is_flag=True,
            help="Read a PROXY protocol v1/v2 header from --trusted-proxy peers "
            "(their client's address then stands for theirs); refuse it from anyone else.",
        ),
        click.option(
            "--trusted-proxy",
            "trusted_proxies",
            multiple=True,
            metavar="ADDR[/PREFIX]",
            callback=_check_trusted,
            help="A proxy whose PROXY header is believed (repeatable).",
        ),
        click.option(
            "--audit-syslog",
            metavar="HOST:PORT",
            callback=_check_collector,
            help="Send DICOM audit messages (PS3.15 A.5, RFC 5424) to this syslog collector.",
        ),
        click.option(
            "--audit-transport",
            type=click.Choice(["udp", "tls"]),
            default="udp",
            show_default=True,
            help="RFC 5426 UDP, or RFC 5425 TLS (with --tls-cert as our certificate).",
        ),
        click.option(
            "--audit-tls-ca",
            type=click.Path(exists=True, dir_okay=False),
            help="CA to check the collector with (default: the system's).",
        ),
        click.option(
            "--audit-source-id",
            metavar="ID",
            help="AuditSourceID of our messages (default: the host name).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class Edge:
    """The PROXY policy and the audit trail of one serving process."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.sender: Any = None
        self.trail: Any = None

    def attach(self, listener: Any, storage: Any, metrics: Any = None) -> None:
        """Set up on ``listener`` before it binds, after its handlers are registered."""
        config = self.config
        if config.proxy_protocol:
            from dicomnet.net.proxy import ProxyPolicy

            listener.proxy_policy = ProxyPolicy.from_strings(config.trusted_proxies)
        if not config.audit_syslog:
            return
        from dicomnet.services.audit_syslog import SyslogSender, syslog_message
        from dicomnet.services.audit_trail import AuditTrail

        host, port = parse_host_port(config.audit_syslog)
        hostname = socket.gethostname()
        self.sender = SyslogSender(
            host,
            port,
            transport=config.audit_transport,
            ssl_context=self._ssl() if config.audit_transport == "tls" else None,
            on_lost=getattr(metrics, "audit_lost", None),
            on_sent=getattr(metrics, "audit_sent", None),
        )
        sender = self.sender

        def submit(xml: str) -> None:
            sender.submit(syslog_message(xml, hostname=hostname))

        self.trail = AuditTrail(
            submit,
            ae_title=config.aet,
            source_id=config.audit_source_id or hostname,
            host=hostname,
        )
        self.trail.wrap_handlers(listener)
        listener.observers.append(self.trail)
        storage.observers.append(self.trail)
        sender.start()
        self.trail.application_started()

    def _ssl(self) -> Any:
        import ssl

        from dicomnet.net.tls import client_context

        config = self.config
        context: ssl.SSLContext = client_context(
            ca=Path(config.audit_tls_ca) if config.audit_tls_ca else None,
            certificate=Path(config.tls_cert) if config.tls_cert else None,
            key=Path(config.tls_key or config.tls_cert) if config.tls_cert else None,
        )
        return context

    async def close(self) -> None:
        """After the listener closed: the stop message, then what is queued, briefly."""
        if self.trail is not None:
            self.trail.application_stopped()
        if self.sender is not None:
            await self.sender.close()
