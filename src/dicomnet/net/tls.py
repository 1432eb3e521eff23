"""TLS contexts for DICOM, per the BCP195 secure transport profile of PS3.15 B.9.

Theory of operation
-------------------
DICOM over TLS is DICOM inside a TLS session on its own port (2762 by
convention); nothing in the Upper Layer changes. The BCP195 profile (RFC
9325) asks for TLS 1.2 or 1.3 only, forward-secret AEAD cipher suites, and no
compression or renegotiation; :func:`server_context` and
:func:`client_context` build :class:`ssl.SSLContext` objects that hold to it,
with mutual authentication when a CA is given to the server and a
certificate to the client.

A listener passes its context to :meth:`dicomnet.net.listener.Listener.listen`
(``ssl=``); the handshake then runs in the event loop's TLS protocol with its
own deadline (``ListenerLimits.tls_handshake_timeout``), after accept and
beside every other association, so a peer that never finishes its handshake
holds nobody up. A client passes its context to :func:`dicomnet.net.client.connect`.

DICOM peers are usually known by address, not by a name on their
certificate, so the client checks the server's chain against the CA but
checks the host name only when given one (``server_hostname``).
"""

from __future__ import annotations

import os
import ssl

__all__ = ["BCP195_CIPHERS", "client_context", "server_context"]

BCP195_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)
"""TLS 1.2 suites of the BCP195 profile (TLS 1.3 suites are all AEAD and always on)."""

Path = str | os.PathLike[str]


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(
    certificate: Path,
    key: Path,
    *,
    ca: Path | None = None,
    require_client_certificate: bool = False,
) -> ssl.SSLContext:
    """A listener's context: its certificate chain and key; peers checked against ``ca``.

    With ``require_client_certificate`` a peer without a certificate signed
    by ``ca`` fails the handshake (mutual authentication); without it a peer
    certificate is checked when offered.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(certificate, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    elif require_client_certificate:
        raise ValueError("requiring client certificates needs a CA to check them against")
    return context


def client_context(
    *,
    ca: Path | None = None,
    certificate: Path | None = None,
    key: Path | None = None,
    check_hostname: bool = False,
) -> ssl.SSLContext:
    """A client's context: the server checked against ``ca`` (or the system's CAs).

    ``certificate`` and ``key`` authenticate us to a listener that asks.
    """
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    if ca is not None:
        context.load_verify_locations(ca)
    else:
        context.load_default_certs()
    if certificate is not None:
        context.load_cert_chain(certificate, key)
    return context
