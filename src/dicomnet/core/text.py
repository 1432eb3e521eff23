"""Peer-supplied text made safe for a log line.

AE titles, UIDs and implementation names arrive as opaque bytes (PS3.8 9.3.2,
decoded as latin-1 so that any byte survives). A peer may put anything in
them: CR and LF to end our log line and start a forged one, ESC to drive the
terminal an operator reads the log in, a NUL or a bidirectional override to
hide what follows. Every log line that carries such a value passes it through
:func:`printable` first, so a line is always one line, and says exactly what
was sent.
"""

from __future__ import annotations

__all__ = ["LOG_LIMIT", "printable"]

LOG_LIMIT = 256
"""Characters of one value kept in a log line; a longer value is cut and marked."""


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: object, *, quote: bool = False, limit: int = LOG_LIMIT) -> str:
    """``value`` as text that cannot break, forge or hide part of a log line.

    Parameters
    ----------
    value : str, bytes or object
        Bytes are decoded as latin-1 (every byte is a character); anything
        else goes through ``str()``.
    quote : bool
        Put the result between double quotes, escaping any double quote in
        it, so that a value with spaces or an empty one reads as one field.
    limit : int
        At most this many characters of the value are shown; a longer one is
        cut and ends with ``...(N more)``.

    Returns
    -------
    str
        The value with every character that ``str.isprintable`` refuses (C0
        and C1 controls, DEL, line and paragraph separators, format characters
        such as bidirectional overrides, unassigned code points) written as
        ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, and the backslash itself
        doubled, so that an escape in the log always means the byte was sent.
    """
    text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
    more = len(text) - limit
    if more > 0:
        text = text[:limit]
    if not (text.isprintable() and "\\" not in text and not (quote and '"' in text)):
        text = "".join(
            "\\\\"
            if c == "\\"
            else '\\"'
            if quote and c == '"'
            else c
            if c.isprintable()
            else _escape(c)
            for c in text
        )
    if more > 0:
        text += f"...({more} more)"
    return f'"{text}"' if quote else text
