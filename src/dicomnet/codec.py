"""The codec switch: the compiled ``dicomnet._pdu`` or its pure twin.

``DICOMNET_NO_EXTENSIONS=1`` is read here and nowhere else at run time; it
forces the pure-Python codec even where the extension is installed.
:data:`IMPLEMENTATION` says which one serves (``"cython"`` or ``"python"``).
The API and its documentation live in :mod:`dicomnet._pdu_py`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from dicomnet import _pdu_py

__all__ = [
    "IMPLEMENTATION",
    "Assembler",
    "PDUReader",
    "decode_command",
    "decode_pdu",
    "encode_command",
    "encode_pdu",
    "fragment_message",
    "implementation_module",
    "parse_pdata",
]

_impl: ModuleType = _pdu_py
if os.environ.get("DICOMNET_NO_EXTENSIONS", "") != "1":
    try:
        _compiled = importlib.import_module("dicomnet._pdu")
    except ImportError:
        pass
    else:
        _impl = _compiled

IMPLEMENTATION: str = "python" if _impl is _pdu_py else "cython"

PDUReader = _impl.PDUReader
Assembler = _impl.Assembler
parse_pdata = _impl.parse_pdata
fragment_message = _impl.fragment_message
encode_pdu = _impl.encode_pdu
decode_pdu = _impl.decode_pdu
encode_command = _impl.encode_command
decode_command = _impl.decode_command


def implementation_module() -> ModuleType:
    """The module behind this switch, for tests and diagnostics."""
    return _impl
