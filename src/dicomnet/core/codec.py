"""The codec switch: the compiled ``dicomnet.core._pdu`` or its pure twin.

``DICOMNET_NO_EXTENSIONS=1`` is read here and nowhere else at run time; it
forces the pure-Python codec even where the extension is installed.
:data:`IMPLEMENTATION` says which one serves (``"cython"`` or ``"python"``).
The API and its documentation live in :mod:`dicomnet.core._pdu_py`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = [
    "IMPLEMENTATION",
    "PUMP_DIGEST",
    "Assembler",
    "PDUReader",
    "decode_command",
    "decode_pdu",
    "encode_command",
    "encode_pdu",
    "fragment_message",
    "implementation_module",
    "parse_pdata",
    "walk_elements",
]


def _load() -> tuple[ModuleType, str]:
    """The compiled codec if allowed and present, else the pure one (imported only then)."""
    if os.environ.get("DICOMNET_NO_EXTENSIONS", "") != "1":
        try:
            return importlib.import_module("dicomnet.core._pdu"), "cython"
        except ImportError:
            pass
    return importlib.import_module("dicomnet.core._pdu_py"), "python"


_impl, IMPLEMENTATION = _load()

PUMP_DIGEST: bool = _impl.PUMP_DIGEST
"""Whether this codec's pump hashes a file sink's dataset while writing it (the
compiled one needs OpenSSL's libcrypto at build time)."""
PDUReader = _impl.PDUReader
Assembler = _impl.Assembler
parse_pdata = _impl.parse_pdata
fragment_message = _impl.fragment_message
encode_pdu = _impl.encode_pdu
decode_pdu = _impl.decode_pdu
encode_command = _impl.encode_command
decode_command = _impl.decode_command
walk_elements = _impl.walk_elements


def implementation_module() -> ModuleType:
    """The module behind this switch, for tests and diagnostics."""
    return _impl
