"""Fuzz the compiled codec against its pure-Python twin (atheris / libFuzzer).

Every input is a byte stream as a peer could send it. It goes through both
implementations of each entry point that reads peer input: the PDU reader
(framing, with the stream cut at a fuzzed point), ``decode_pdu`` on every
PDU it yields, the P-DATA assembler and ``decode_command``. Each entry point
may only raise :class:`dicomnet.errors.ProtocolError`; anything else is a
crash. Where the two implementations disagree (one accepts what the other
refuses, or they decode different values) that is a crash too, so the
compiled codec is checked against the readable one.

Run (from the repository root, with ``pip install atheris``)::

    python bench/fuzz/fuzz_codec.py -max_total_time=600 -print_final_stats=1 bench/fuzz/corpus

The corpus folder is optional; libFuzzer grows it with inputs that reach new
code. Coverage then comes from the instrumented Python twin. For coverage of
the compiled codec's own branches, build it instrumented
(``bench/fuzz/build_instrumented.sh``) and name the result in
``DICOMNET_FUZZ_EXTENSION``: it is loaded as ``dicomnet.core._pdu`` after
libFuzzer's runtime, whose coverage callbacks it calls.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

import atheris


def compiled_codec() -> ModuleType:
    """``dicomnet.core._pdu``: the instrumented build when DICOMNET_FUZZ_EXTENSION names one.

    Called from the first input, once ``atheris.Fuzz`` has loaded libFuzzer's
    runtime (privately); the runtime is then made global so that the
    instrumented module's ``__sanitizer_cov_*`` calls resolve to it, and
    libFuzzer adds the module's counters as it does for any library loaded
    while it runs.
    """
    path = os.environ.get("DICOMNET_FUZZ_EXTENSION")
    if not path:
        from dicomnet.core import _pdu

        return _pdu
    folder = os.path.dirname(atheris.__file__)
    core = next(n for n in os.listdir(folder) if n.startswith("core_with_libfuzzer"))
    ctypes.CDLL(os.path.join(folder, core), mode=os.RTLD_NOW | os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    spec = importlib.util.spec_from_file_location("dicomnet.core._pdu", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


with atheris.instrument_imports():
    from dicomnet.core import _pdu_py
    from dicomnet.errors import ProtocolError

_CODECS: list[ModuleType] = []
"""The compiled codec and the twin, loaded by the first input."""


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    """("ok", value) or ("error", exception class name); other exceptions escape."""
    try:
        return "ok", call(*args)
    except ProtocolError as exc:
        return "error", type(exc).__name__


def read_pdus(codec: Any, data: bytes, cut: int) -> list[tuple[int, bytes]] | str:
    reader = codec.PDUReader(max_pdu_length=16384, max_associate_length=65536)
    pdus: list[tuple[int, bytes]] = []
    try:
        for chunk in (data[:cut], data[cut:]):
            reader.feed(chunk)
            while (pdu := reader.next_pdu()) is not None:
                pdus.append((pdu[0], bytes(pdu[1])))
    except ProtocolError as exc:
        return type(exc).__name__
    return pdus


def assemble(codec: Any, body: bytes) -> tuple[str, Any]:
    assembler = codec.Assembler(4096)
    assembler.max_buffered_dataset_length = 8192
    assembler.context_ids = {1, 3, 5}

    def feed() -> list[tuple[int, dict[int, object], bytes | None]]:
        results = []
        for part in (body, body):  # twice: state carried between PDUs
            for context_id, command, dataset in assembler.feed(part):
                results.append((context_id, command, None if dataset is None else bytes(dataset)))
        return results

    return outcome(feed)


def test_one_input(data: bytes) -> None:
    if not _CODECS:
        _CODECS.extend((compiled_codec(), _pdu_py))
    if not data:
        return
    cut = data[0] % (len(data) + 1)
    stream = data[1:]
    framed = [read_pdus(codec, stream, cut) for codec in _CODECS]
    if framed[0] != framed[1]:
        raise AssertionError(f"PDUReader differs: {framed[0]!r} != {framed[1]!r}")
    if isinstance(framed[0], list):
        for pdu_type, body in framed[0]:
            decoded = [outcome(codec.decode_pdu, pdu_type, body) for codec in _CODECS]
            if decoded[0] != decoded[1]:
                raise AssertionError(f"decode_pdu differs: {decoded[0]!r} != {decoded[1]!r}")
            if pdu_type == 0x04:
                assembled = [assemble(codec, body) for codec in _CODECS]
                if assembled[0] != assembled[1]:
                    raise AssertionError(f"Assembler differs: {assembled[0]!r} != {assembled[1]!r}")
    commands = [outcome(codec.decode_command, stream) for codec in _CODECS]
    if commands[0] != commands[1]:
        raise AssertionError(f"decode_command differs: {commands[0]!r} != {commands[1]!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
