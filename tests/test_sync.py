"""The blocking facade: scripts and notebooks use the same core without asyncio."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import dicomnet
import dicomnet.sync

from peers import dcmtk_server, free_port


@pytest.mark.interop
def test_blocking_echo_against_dcmtk_storescp() -> None:
    port = free_port()
    with dcmtk_server("storescp", ["--ignore", str(port)], port):
        with dicomnet.sync.connect("127.0.0.1", port, called_ae_title="STORESCP") as assoc:
            assert assoc.echo().status == 0x0000
            assert assoc.negotiated.peer_max_pdu_length > 0
        # a second association reuses the one loop thread of the process
        with dicomnet.sync.connect("127.0.0.1", port) as assoc:
            assert assoc.echo().status == 0x0000
    loops = [t for t in threading.enumerate() if t.name == "dicomnet-loop"]
    assert len(loops) == 1


def test_blocking_errors_are_the_library_errors() -> None:
    with pytest.raises(dicomnet.ConnectionClosed):
        dicomnet.sync.connect("127.0.0.1", free_port())


def test_blocking_facade_serves_a_dicomnet_listener_in_another_process(tmp_path) -> None:
    listener = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dicomnet",
            "listen",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--aet",
            "SYNCSCP",
            "--require-called-aet",
            "--dir",
            str(tmp_path / "archive"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert listener.stdout is not None
        port = int(listener.stdout.readline().strip().rsplit(":", 1)[1])
        with pytest.raises(dicomnet.AssociationRejected) as info:
            dicomnet.sync.connect("127.0.0.1", port, called_ae_title="WRONG")
        assert info.value.reason == 7
        with dicomnet.sync.connect("127.0.0.1", port, called_ae_title="SYNCSCP") as assoc:
            assert assoc.echo().status == 0
    finally:
        listener.terminate()
        listener.wait(timeout=15)
