"""pynetdicom at its best, for side-by-side benchmarks.

Two settings pynetdicom leaves to its users: ``TCP_NODELAY`` on every socket
(without it each small message waits for a delayed ACK, about 40 ms) and its
log handlers off. Both are applied here, once, before any AE is created.
"""

from __future__ import annotations

import logging
import socket
from typing import Any


def tune_pynetdicom() -> None:
    """Set TCP_NODELAY on pynetdicom's client and server sockets; silence its logs."""
    from pynetdicom import _config, transport

    _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    if getattr(transport, "_dicomnet_tuned", False):
        return

    create_socket = transport.AssociationSocket._create_socket

    def nodelay_socket(self: Any, address: Any) -> socket.socket:
        sock = create_socket(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    get_request = transport.AssociationServer.get_request

    def nodelay_request(self: Any) -> tuple[socket.socket, Any]:
        client, address = get_request(self)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    transport.AssociationSocket._create_socket = nodelay_socket
    transport.AssociationServer.get_request = nodelay_request
    transport._dicomnet_tuned = True
