"""pynetdicom at its best as a storage SCU or SCP, for ``store_bench.py``.

    python bench/pynetdicom_store.py scp PORT OUT_DIR
    python bench/pynetdicom_store.py scu PORT FOLDER

The SCP writes each dataset as received (preamble, file meta, the encoded
bytes), never decoding it; the SCU sends files by path, which pynetdicom sends
without decoding. TCP_NODELAY on, log handlers off (``pynetdicom_best``).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pynetdicom_best import tune_pynetdicom

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


def serve(port: int, out: Path) -> None:
    from pydicom.filewriter import write_file_meta_info
    from pynetdicom import AE, evt

    tune_pynetdicom()
    out.mkdir(parents=True, exist_ok=True)

    def on_store(event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        with open(out / f"{uid}.dcm", "wb") as stream:
            stream.write(b"\x00" * 128 + b"DICM")
            write_file_meta_info(stream, event.file_meta, enforce_standard=True)
            stream.write(event.request.DataSet.getvalue())
        return 0x0000

    ae = AE(ae_title="PYNETSCP")
    ae.maximum_pdu_size = 0
    ae.add_supported_context(CT_IMAGE_STORAGE, SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    print("listening", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.shutdown()


def send(port: int, folder: Path) -> None:
    from pynetdicom import AE

    tune_pynetdicom()
    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(CT_IMAGE_STORAGE, SYNTAXES)
    assoc = ae.associate("127.0.0.1", port, max_pdu=0)
    if not assoc.is_established:
        sys.exit("association failed")
    failed = 0
    for path in sorted(folder.rglob("*.dcm")):
        status = assoc.send_c_store(path)
        if not status or int(status.Status) != 0:
            failed += 1
    assoc.release()
    if failed:
        sys.exit(f"{failed} instances failed")


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    role, port_text, path_text = sys.argv[1:4]
    if role == "scp":
        serve(int(port_text), Path(path_text))
    else:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        send(int(port_text), Path(path_text))
