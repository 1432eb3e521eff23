"""An explicit VR file reaches a peer that accepts only implicit VR little endian.

Implicit VR little endian is the one transfer syntax every peer must accept
(PS3.5 10.1), so every sender proposes it beside the file's own syntax. The
received bytes are compared with what DCMTK's ``dcmconv +ti`` makes of the
sent file: an independent conversion, not dicomnet's own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomnet.dataset.part10 import read_file_meta
from dicomnet.net.store_client import storage_contexts

from factory import ct_dataset, dataset_bytes, make_study, write_part10
from peers import dcmtk_env, dcmtk_server, free_port, run_dcmtk, wait_for_port

pytestmark = pytest.mark.interop


def implicit_twins(sent: list[Path], folder: Path) -> dict[str, bytes]:
    """SOP Instance UID -> dataset bytes of DCMTK's implicit VR conversion."""
    folder.mkdir()
    twins = {}
    for path in sent:
        out = folder / path.name
        converted = run_dcmtk("dcmconv", "+ti", str(path), str(out))
        assert converted.returncode == 0, converted.stderr
        twins[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = dataset_bytes(out)
    return twins


def store_cli(called: str, port: int, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """``dicomnet store`` of ``paths`` to 127.0.0.1:port."""
    return subprocess.run(
        [sys.executable, "-m", "dicomnet", "store", "-q", "--aec", called, "127.0.0.1", str(port)]
        + [str(path) for path in paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def received(folder: Path) -> dict[str, bytes]:
    """SOP Instance UID -> dataset bytes, every file received in implicit VR."""
    found = {}
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith("."):
            with open(path, "rb") as stream:
                meta = read_file_meta(stream)
            assert meta.transfer_syntax == ImplicitVRLittleEndian, path
            found[meta.sop_instance_uid] = dataset_bytes(path)
    return found


def test_every_uncompressed_instance_is_offered_in_implicit_vr() -> None:
    contexts = storage_contexts([("1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian)])
    assert contexts[0] == ("1.2.840.10008.5.1.4.1.1.2", [ExplicitVRLittleEndian])
    sop_class, alternatives = contexts[1]
    assert sop_class == "1.2.840.10008.5.1.4.1.1.2"
    assert alternatives[0] == ImplicitVRLittleEndian
    assert ExplicitVRLittleEndian not in alternatives  # already the first context


def test_store_cli_into_storescp_accepting_only_implicit_vr(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    sent = [write_part10(ct_dataset(i), out / f"ct{i}.dcm") for i in range(5)]
    twins = implicit_twins(sent, tmp_path / "dcmconv")
    inbox = tmp_path / "received"
    inbox.mkdir()
    port = free_port()
    args = ["+xi", "-aet", "STORESCP", "-od", str(inbox), str(port)]
    with dcmtk_server("storescp", args, port):
        result = store_cli("STORESCP", port, sent)
    assert result.returncode == 0, result.stderr
    assert received(inbox) == twins


def test_move_from_the_archive_to_a_destination_accepting_only_implicit_vr(
    tmp_path: Path,
) -> None:
    study, sent = make_study(tmp_path / "sent", 4)
    assert {read_file_meta(open(p, "rb")).transfer_syntax for p in sent} == {ExplicitVRLittleEndian}
    twins = implicit_twins(sent, tmp_path / "dcmconv")
    port, destination_port = free_port(), free_port()
    inbox = tmp_path / "moved"
    inbox.mkdir()
    archive = subprocess.Popen(
        [
            sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE",
            "--host", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path / "archive"),
            "--move-destination", f"IMPLICIT=127.0.0.1:{destination_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dcmtk_env(),
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        stored = store_cli("ARCHIVE", port, sent)
        assert stored.returncode == 0, stored.stderr
        # The archive keeps the files as sent: explicit VR.
        kept = [p for p in (tmp_path / "archive").rglob("*.dcm")]
        assert len(kept) == 4
        assert {read_file_meta(open(p, "rb")).transfer_syntax for p in kept} == {
            ExplicitVRLittleEndian
        }
        args = ["+xi", "-aet", "IMPLICIT", "-od", str(inbox), str(destination_port)]
        with dcmtk_server("storescp", args, destination_port):
            move = run_dcmtk(
                "movescu", "-S", "-aet", "MOVER", "-aec", "ARCHIVE", "-aem", "IMPLICIT",
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                "127.0.0.1", str(port),
            )  # fmt: skip
        assert move.returncode == 0, move.stderr
    finally:
        archive.terminate()
        archive.wait(timeout=30)
    assert received(inbox) == twins


def test_many_sop_classes_still_fit_with_implicit_vr_offered() -> None:
    classes = [f"1.2.826.0.1.3680043.8.498.{n}" for n in range(100)]
    contexts = storage_contexts([(uid, ExplicitVRLittleEndian) for uid in classes])
    assert len(contexts) == 100  # one each: own syntax first, then the conversions
    for uid, syntaxes in contexts:
        assert syntaxes[:2] == [ExplicitVRLittleEndian, ImplicitVRLittleEndian], uid
    with pytest.raises(ValueError, match="several runs"):
        storage_contexts([(f"1.2.3.{n}", ExplicitVRLittleEndian) for n in range(128)])
