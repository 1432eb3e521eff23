"""Write a seed corpus of well-formed PDU streams for ``fuzz_codec.py``.

Each seed is one fuzz input: a first byte choosing where the stream is cut,
then PDUs as a peer sends them. Starting from valid association requests and
P-DATA with real command sets lets the fuzzer reach the deep parsers at once.

    python bench/fuzz/seeds.py bench/fuzz/corpus
"""

from __future__ import annotations

import sys
from pathlib import Path

from dicomnet.testing import raw

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def seeds() -> dict[str, bytes]:
    store = raw.c_store_rq(CT, "1.2.3.4.5")
    return {
        "associate": raw.associate_rq(
            contexts=[
                raw.presentation_context(1),
                raw.presentation_context(3, CT, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]),
            ],
            extra_items=raw.item(0x55, b"dicomnet"),
        ),
        "echo": raw.p_data(raw.pdv(1, 0x03, raw.c_echo_rq(7))),
        "store": raw.p_data(
            raw.pdv(3, 0x01, store[:20]),
            raw.pdv(3, 0x03, store[20:]),
            raw.pdv(3, 0x00, b"\x08\x00\x18\x00\x0a\x00\x00\x001.2.3.4.5\0"),
            raw.pdv(3, 0x02, b"\x10\x00\x10\x00\x04\x00\x00\x00DOE^"),
        ),
        "find": raw.p_data(raw.pdv(5, 0x03, raw.c_find_rq(FIND)), raw.pdv(5, 0x02, b"")),
        "release": raw.release_rq() + raw.abort(2, 6),
    }


def main(folder: str) -> None:
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for name, stream in seeds().items():
        (target / f"seed-{name}").write_bytes(bytes([0xFF]) + stream)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/fuzz/corpus")
