"""Network options every client command shares, named as DCMTK's tools name them.

``--connect-timeout`` (DCMTK ``-to``), ``--acse-timeout`` (``-ta``) and
``--dimse-timeout`` (``-td``) are separate, as a DCMTK user expects; the older
``--timeout`` sets all three at once. ``--propose`` lists the transfer
syntaxes to propose (DCMTK ``-xi``, ``-xe``, ``-xb``, ``-xd``...). ``--user``,
``--password``, ``--kerberos-ticket``, ``--saml`` and ``--jwt`` send a user
identity (PS3.7 D.3.3.7), as DCMTK's ``--user``, ``--password``,
``--kerberos``, ``--saml`` and ``--jwt`` do. The table mapping DCMTK's flags
to these is in ``docs/cli.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dicomnet.core.pdu import UserIdentityRQ, UserIdentityType
from dicomnet.core.uids import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    HTJ2K,
    HTJ2K_LOSSLESS,
    IMPLICIT_VR_LITTLE_ENDIAN,
    JPEG_2000,
    JPEG_2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
    JPEG_LS_LOSSLESS,
    JPEG_LS_NEAR_LOSSLESS,
    RLE_LOSSLESS,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    is_valid_uid,
)

__all__ = [
    "TRANSFER_SYNTAX_NAMES",
    "connection_kwargs",
    "network_options",
    "parse_propose",
    "user_identity",
]

TRANSFER_SYNTAX_NAMES: dict[str, str] = {
    "implicit": IMPLICIT_VR_LITTLE_ENDIAN,
    "explicit": EXPLICIT_VR_LITTLE_ENDIAN,
    "big": EXPLICIT_VR_BIG_ENDIAN,
    "deflated": DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    "rle": RLE_LOSSLESS,
    "jpeg-lossless": JPEG_LOSSLESS_SV1,
    "jpeg-baseline": JPEG_BASELINE,
    "jpeg-extended": JPEG_EXTENDED,
    "jpeg-ls": JPEG_LS_LOSSLESS,
    "jpeg-ls-lossy": JPEG_LS_NEAR_LOSSLESS,
    "j2k-lossless": JPEG_2000_LOSSLESS,
    "j2k": JPEG_2000,
    "htj2k-lossless": HTJ2K_LOSSLESS,
    "htj2k": HTJ2K,
}
"""Names ``--propose`` accepts; a transfer syntax UID is accepted as well."""


def parse_propose(value: str | None) -> tuple[str, ...] | None:
    """``implicit,explicit,...`` as transfer syntax UIDs, in the order given.

    Raises
    ------
    click.BadParameter
        A name that is neither listed in :data:`TRANSFER_SYNTAX_NAMES` nor a UID.
    """
    if value is None:
        return None
    syntaxes: list[str] = []
    for name in (part.strip() for part in value.split(",")):
        if not name:
            continue
        uid = TRANSFER_SYNTAX_NAMES.get(name.lower(), name)
        if not is_valid_uid(uid):
            known = ", ".join(TRANSFER_SYNTAX_NAMES)
            raise click.BadParameter(f"{name!r} is not a transfer syntax ({known}, or a UID)")
        if uid not in syntaxes:
            syntaxes.append(uid)
    if not syntaxes:
        raise click.BadParameter("no transfer syntax given")
    return tuple(syntaxes)


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes().strip() if path is not None else None


def user_identity(options: dict[str, Any]) -> UserIdentityRQ | None:
    """The user identity sub-item from the identity options, or None (PS3.7 D.3.3.7.1).

    Exactly one identity may be given: a user name (type 1), with a password
    (type 2), or a Kerberos ticket (3), SAML assertion (4) or JSON web token
    (5) read from a file.
    """
    user, password = options.pop("user", None), options.pop("password", None)
    tokens = {
        UserIdentityType.KERBEROS: _read(options.pop("kerberos_ticket", None)),
        UserIdentityType.SAML: _read(options.pop("saml", None)),
        UserIdentityType.JWT: _read(options.pop("jwt", None)),
    }
    positive = bool(options.pop("positive_response", False))
    given = [kind for kind, value in tokens.items() if value is not None]
    if password is not None and user is None:
        raise click.UsageError("--password needs --user")
    if len(given) + (user is not None) > 1:
        raise click.UsageError("give one identity: --user, --kerberos-ticket, --saml or --jwt")
    if user is not None:
        if password is None:
            return UserIdentityRQ(UserIdentityType.USERNAME, positive, user.encode("utf-8"))
        return UserIdentityRQ(
            UserIdentityType.USERNAME_AND_PASSCODE,
            positive,
            user.encode("utf-8"),
            password.encode("utf-8"),
        )
    if given:
        kind = given[0]
        return UserIdentityRQ(kind, positive, tokens[kind] or b"")
    return None


def network_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The timeouts, ``--propose`` and the user identity options."""
    options = [
        click.option(
            "--timeout",
            type=float,
            default=None,
            help="Seconds for every step (sets the three below unless they are given).",
        ),
        click.option(
            "--connect-timeout",
            type=float,
            default=None,
            help="Seconds for the TCP connection (and TLS handshake) [default: 30].",
        ),
        click.option(
            "--acse-timeout",
            type=float,
            default=None,
            help="Seconds for A-ASSOCIATE and A-RELEASE answers [default: 30].",
        ),
        click.option(
            "--dimse-timeout",
            type=float,
            default=None,
            help="Seconds of silence allowed within a DIMSE exchange [default: 60].",
        ),
        click.option(
            "--propose",
            default=None,
            metavar="TS[,TS...]",
            help="Transfer syntaxes to propose, in order: implicit, explicit, big, "
            "deflated, rle, jpeg-lossless, jpeg-ls, j2k-lossless, ... or UIDs.",
        ),
        click.option("--user", default=None, help="User identity: user name."),
        click.option("--password", default=None, help="User identity: passcode (with --user)."),
        click.option(
            "--kerberos-ticket",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="User identity: a Kerberos service ticket from this file.",
        ),
        click.option(
            "--saml",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="User identity: a SAML assertion from this file.",
        ),
        click.option(
            "--jwt",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="User identity: a JSON web token from this file.",
        ),
        click.option(
            "--positive-response",
            is_flag=True,
            help="Ask the peer to answer the user identity (PS3.7 D.3.3.7).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def connection_kwargs(options: dict[str, Any], default_dimse: float = 60.0) -> dict[str, Any]:
    """Pop the network options from a command's keyword arguments.

    Returns the keyword arguments of :func:`dicomnet.net.client.connect` they
    stand for (``timeouts``, ``association_timeouts``, ``user_identity``)
    and, under ``"propose"``, the transfer syntaxes (None: the command's own).
    """
    # imported here: the network layer is not needed to build the commands
    from dicomnet.net.client import AssociationTimeouts
    from dicomnet.net.requests import RequestTimeouts

    every = options.pop("timeout", None)
    connect = _first(options.pop("connect_timeout", None), every, 30.0)
    acse = _first(options.pop("acse_timeout", None), every, 30.0)
    dimse = _first(options.pop("dimse_timeout", None), every, default_dimse)
    return {
        "timeouts": RequestTimeouts(dimse, dimse, dimse, None),
        "association_timeouts": AssociationTimeouts(connect=connect, release=acse, acse=acse),
        "user_identity": user_identity(options),
        "propose": parse_propose(options.pop("propose", None)),
    }


def proposed(syntaxes: tuple[str, ...] | None) -> tuple[str, ...]:
    """The transfer syntaxes a query or echo context offers."""
    return syntaxes or UNCOMPRESSED_TRANSFER_SYNTAXES


def _first(*values: float | None) -> float:
    for value in values:
        if value is not None:
            return float(value)
    raise AssertionError("a default is always given")
