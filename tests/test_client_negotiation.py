"""Extended negotiation from the client (PS3.7 D.3.3.5-D.3.3.7), over the wire.

``connect()`` proposes SOP Class Extended and Common Extended Negotiation
and User Identity (all five types) and exposes the answers; pynetdicom is the
acceptor that sees and answers them. DCMTK storescu's ``-usr``/``-pwd``
reach a dicomnet listener's identity hook; the CLI's identity options reach
pynetdicom. The archive negotiates relational queries: pynetdicom's findscu
with and without ``--relational-query``, and ``dicomnet find`` with and
without ``--hierarchical``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dicomnet.cli.main import main
from dicomnet.core.negotiation import AcceptorPolicy, UserIdentityDecision
from dicomnet.core.pdu import (
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
    UserIdentityType,
)
from dicomnet.net import client
from dicomnet.net.listener import Listener
from dicomnet.services.discard import DiscardStorage

from factory import make_study
from peers import free_port, run_dcmtk

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
STORAGE_SERVICE = "1.2.840.10008.4.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def pynetdicom_acceptor() -> Any:
    """A pynetdicom SCP answering user identity and both extended negotiations."""
    from pynetdicom import AE, evt

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    seen: dict[str, Any] = {}

    def on_user(event: Any) -> tuple[bool, bytes | None]:
        seen["identity"] = (event.user_id_type, event.primary_field, event.secondary_field)
        if event.primary_field == b"intruder":
            return False, None
        return True, b"server-says-" + bytes(event.primary_field)[:8]

    def on_extended(event: Any) -> dict[str, bytes]:
        seen["extended"] = dict(event.app_info)
        return {uid: b"\x01\x00" for uid in event.app_info}

    def on_common(event: Any) -> dict[str, Any]:
        seen["common"] = {uid: item.service_class_uid for uid, item in event.items.items()}
        return dict(event.items)

    ae = AE(ae_title="PYSCP")
    ae.add_supported_context("1.2.840.10008.1.1")
    ae.add_supported_context(CT, [EXPLICIT])
    ae.add_supported_context(ENHANCED_CT, [EXPLICIT])
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[
            (evt.EVT_USER_ID, on_user),
            (evt.EVT_SOP_EXTENDED, on_extended),
            (evt.EVT_SOP_COMMON, on_common),
        ],
    )
    try:
        yield port, seen
    finally:
        server.shutdown()


IDENTITIES = [
    UserIdentityRQ(UserIdentityType.USERNAME, True, b"alice"),
    UserIdentityRQ(UserIdentityType.USERNAME_AND_PASSCODE, True, b"alice", b"secret"),
    UserIdentityRQ(UserIdentityType.KERBEROS, True, b"kerberos-ticket-bytes"),
    UserIdentityRQ(UserIdentityType.SAML, True, b"<saml:Assertion/>"),
    UserIdentityRQ(UserIdentityType.JWT, True, b"eyJhbGciOiJub25lIn0.e30."),
]


@pytest.mark.parametrize(
    "identity", IDENTITIES, ids=lambda i: UserIdentityType(i.identity_type).name
)
def test_connect_proposes_every_user_identity_type_to_pynetdicom(
    pynetdicom_acceptor: Any, identity: UserIdentityRQ
) -> None:
    port, seen = pynetdicom_acceptor

    async def scenario() -> Any:
        async with client.connect("127.0.0.1", port, user_identity=identity) as assoc:
            return assoc.negotiated

    negotiated = run(scenario())
    kind, primary, secondary = seen["identity"]
    assert (kind, primary) == (identity.identity_type, identity.primary_field)
    if identity.identity_type == UserIdentityType.USERNAME_AND_PASSCODE:
        assert secondary == b"secret"
    assert negotiated.user_identity == identity
    if identity.identity_type in (
        UserIdentityType.USERNAME,
        UserIdentityType.USERNAME_AND_PASSCODE,
    ):
        # PS3.7 D.3.3.7.2: empty if sent at all; pynetdicom sends none for these types
        assert negotiated.user_identity_response in (None, b"")
    else:
        assert negotiated.user_identity_response == b"server-says-" + identity.primary_field[:8]


def test_connect_proposes_extended_and_common_extended_negotiation(
    pynetdicom_acceptor: Any,
) -> None:
    port, seen = pynetdicom_acceptor

    async def scenario() -> Any:
        async with client.connect(
            "127.0.0.1",
            port,
            contexts=[(CT, [EXPLICIT]), (ENHANCED_CT, [EXPLICIT])],
            extended=[SOPClassExtendedNegotiation(CT, b"\x01\x01")],
            common_extended=[
                SOPClassCommonExtendedNegotiation(ENHANCED_CT, STORAGE_SERVICE, (CT,))
            ],
        ) as assoc:
            return assoc.negotiated

    negotiated = run(scenario())
    assert seen["extended"] == {CT: b"\x01\x01"}
    assert seen["common"] == {ENHANCED_CT: STORAGE_SERVICE}
    assert negotiated.sop_class_extended == {CT: b"\x01\x00"}
    assert set(negotiated.sop_class_common_extended) == {ENHANCED_CT}


def test_a_refused_identity_is_a_rejection(pynetdicom_acceptor: Any) -> None:
    import dicomnet

    port, _ = pynetdicom_acceptor

    async def scenario() -> None:
        identity = UserIdentityRQ(UserIdentityType.USERNAME, False, b"intruder")
        await client.connect("127.0.0.1", port, user_identity=identity)

    with pytest.raises(dicomnet.AssociationRejected):
        run(scenario())


def test_cli_identity_options_reach_pynetdicom(pynetdicom_acceptor: Any, tmp_path: Path) -> None:
    port, seen = pynetdicom_acceptor
    token = tmp_path / "token.jwt"
    token.write_text("eyJhbGciOiJub25lIn0.e30.\n")
    runner = CliRunner()
    result = runner.invoke(
        main, ["echo", "--user", "bob", "--password", "pw", "127.0.0.1", str(port)]
    )
    assert result.exit_code == 0, result.output
    assert seen["identity"] == (2, b"bob", b"pw")
    result = runner.invoke(
        main, ["echo", "--jwt", str(token), "--positive-response", "127.0.0.1", str(port)]
    )
    assert result.exit_code == 0, result.output
    assert seen["identity"][:2] == (5, b"eyJhbGciOiJub25lIn0.e30.")
    both = runner.invoke(main, ["echo", "--user", "a", "--jwt", str(token), "127.0.0.1", str(port)])
    assert both.exit_code == 2 and "one identity" in both.output


def test_dcmtk_storescu_user_and_password_reach_our_identity_hook(tmp_path: Path) -> None:
    _, paths = make_study(tmp_path / "study", 1)
    seen: list[tuple[int, bytes, bytes]] = []

    def check(identity: UserIdentityRQ, rq: Any) -> UserIdentityDecision:
        seen.append((identity.identity_type, identity.primary_field, identity.secondary_field))
        return UserIdentityDecision(identity.primary_field == b"alice", b"")

    async def scenario() -> tuple[int, int]:
        listener = Listener(
            "SCP", accept_any_storage=True, policy=AcceptorPolicy(user_identity=check)
        )
        DiscardStorage().attach(listener)
        async with listener:
            await listener.listen("127.0.0.1", 0)
            good = await asyncio.to_thread(
                run_dcmtk, "storescu", "-usr", "alice", "-pwd", "secret", "-rsp",
                "127.0.0.1", str(listener.port), str(paths[0]),
            )  # fmt: skip
            bad = await asyncio.to_thread(
                run_dcmtk, "storescu", "-usr", "mallory", "-pwd", "x",
                "127.0.0.1", str(listener.port), str(paths[0]),
            )  # fmt: skip
            return good.returncode, bad.returncode

    good, bad = run(scenario())
    assert good == 0
    assert bad != 0
    assert seen == [(2, b"alice", b"secret"), (2, b"mallory", b"x")]


# -- the archive negotiates relational queries ----------------------------------------------
def archive(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dicomnet", "listen", "--host", "127.0.0.1", "--port", "0",
         "--dir", str(tmp_path / "archive")],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip


def test_the_archive_answers_relational_queries_only_when_negotiated(tmp_path: Path) -> None:
    study, paths = make_study(tmp_path / "study", 2)
    process = archive(tmp_path)
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip().rsplit(":", 1)[1]
        loaded = run_dcmtk("storescu", "127.0.0.1", port, *map(str, paths))
        assert loaded.returncode == 0, loaded.stderr

        def findscu(*extra: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "pynetdicom", "findscu", "-S", "-d",
                 "-k", "QueryRetrieveLevel=SERIES", "-k", "Modality=CT",
                 "-k", "SeriesInstanceUID=", *extra, "127.0.0.1", port],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            return done.stdout + done.stderr

        # DCMTK findscu cannot ask for relational queries: hierarchical rules apply
        dcmtk = run_dcmtk(
            "findscu",
            "-v",
            "-S",
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            "Modality=CT",
            "-k",
            "SeriesInstanceUID",
            "127.0.0.1",
            port,
        )
        assert "DataSetDoesNotMatchSOPClass" in dcmtk.stdout + dcmtk.stderr, dcmtk.stderr
        dcmtk = run_dcmtk("findscu", "-v", "-S", "-k", "QueryRetrieveLevel=SERIES",
                          "-k", f"StudyInstanceUID={study}", "-k", "SeriesInstanceUID",
                          "127.0.0.1", port)  # fmt: skip
        assert (dcmtk.stdout + dcmtk.stderr).count("Pending") == 2, dcmtk.stdout + dcmtk.stderr

        relational = findscu("--relational-query")
        assert relational.count("0xFF00") == 2, relational
        hierarchical = findscu()
        assert "0xA900" in hierarchical and "0xFF00" not in hierarchical, hierarchical

        runner = CliRunner()
        found = runner.invoke(
            main, ["find", "--json", "--level", "SERIES", "-k", "Modality=CT", "127.0.0.1", port]
        )
        assert found.exit_code == 0, found.output
        assert {m["0020000D"]["Value"][0] for m in json.loads(found.stdout)} == {study}
        refused = runner.invoke(
            main,
            ["find", "--hierarchical", "--level", "SERIES", "-k", "Modality=CT", "127.0.0.1", port],
        )
        assert refused.exit_code == 1 and "0xA900" in refused.output
        with_study = runner.invoke(
            main,
            ["find", "--hierarchical", "--json", "--level", "SERIES",
             "-k", f"StudyInstanceUID={study}", "127.0.0.1", port],
        )  # fmt: skip
        assert with_study.exit_code == 0, with_study.output
        assert len(json.loads(with_study.stdout)) == 2
    finally:
        process.terminate()
        process.wait(timeout=15)
