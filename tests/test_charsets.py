"""Character sets in the archive's C-FIND: instances in four Specific Character Sets,
stored with DCMTK's storescu, queried with findscu and pynetdicom, on SQLite and PostgreSQL.

Each response must declare the set of what it carries (PS3.4 C.4.1.1.3.2) and
decode, at the requester, to the very text the instance held.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore

from dicomnet.archive.index import ArchiveIndex, IndexEntry
from dicomnet.dataset.charsets import can_encode, response_character_set

from factory import ct_dataset, write_part10
from peers import dcmtk_env, free_port, run_dcmtk, wait_for_port
from postgres_server import postgres_server

# (name, Specific Character Set, patient name, study description, raw bytes the file must hold)
CASES = [
    ("latin1", "ISO_IR 100", "Müller^Jürgen", "Thorax ärztlich", "Müller".encode("latin-1")),
    ("utf8", "ISO_IR 192", "Wang^XiaoDong=王^小東", "胸部 CT", "王".encode()),
    (
        "jis",
        "\\ISO 2022 IR 87",
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "",
        b"\x1b$B",  # ISO 2022 escape to JIS X 0208 (PS3.5 6.1.2.5.3)
    ),
    ("cyrillic", "ISO_IR 144", "Иванов^Иван", "Грудная клетка", "Грудная".encode("iso8859_5")),
]


def charset_instance(
    folder: Path,
    name: str,
    charset: str,
    patient: str,
    description: str,
    study: str | None = None,
    series_description: str = "",
) -> Path:
    ds = ct_dataset(0, pixels=8, study=study)
    ds.SpecificCharacterSet = charset.split("\\") if "\\" in charset else charset
    ds.PatientName = patient
    ds.PatientID = f"PID-{name}"
    ds.StudyDescription = description
    if series_description:
        ds.SeriesDescription = series_description
    folder.mkdir(parents=True, exist_ok=True)
    return write_part10(ds, folder / f"{name}-{ds.SOPInstanceUID}.dcm")


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def listen(folder: Path, port: int, index: str | None) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "dicomnet", "listen", "--aet", "ARCHIVE", "--host", "127.0.0.1",
        "--port", str(port), "--dir", str(folder), "--fsync", "never",
    ]  # fmt: skip
    if index:
        command += ["--index", index]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dcmtk_env()
    )
    wait_for_port("127.0.0.1", port, 30)
    return process


def findscu(port: int, out: Path, *keys: str | bytes) -> list[Dataset]:
    """findscu with each ``-k``; the responses it extracted, decoded by pydicom."""
    out.mkdir(parents=True, exist_ok=True)
    args: list[str | bytes] = ["/usr/bin/findscu", "-S", "-aec", "ARCHIVE", "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    args += ["127.0.0.1", str(port)]
    done = subprocess.run(args, capture_output=True, timeout=30, env=dcmtk_env(), check=False)
    assert done.returncode == 0, done.stderr
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def raw_value(path: Path, keyword_tag: tuple[int, int]) -> bytes:
    """The undecoded bytes of an element in an extracted response."""
    ds = dcmread(path)
    return bytes(ds.get_item(keyword_tag).value)


def pynetdicom_find(port: int, identifier: Dataset) -> list[Dataset]:
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        found = [
            ds
            for status, ds in assoc.send_c_find(
                identifier, StudyRootQueryRetrieveInformationModelFind
            )
            if status and status.Status in (0xFF00, 0xFF01)
        ]
    finally:
        assoc.release()
    return found


def scenario(tmp_path: Path, index: str | None) -> None:
    sent = tmp_path / "sent"
    paths = {
        name: charset_instance(sent, name, charset, patient, description)
        for name, charset, patient, description, _ in CASES
    }
    for (name, _, _, _, raw), path in zip(CASES, paths.values(), strict=True):
        assert raw in path.read_bytes(), name  # the file holds the set's own bytes
    mixed_study = generate_uid()
    mixed = [
        charset_instance(sent, "mixed-a", "ISO_IR 100", "MIXED^CASE", "Étude", mixed_study,
                         "Série"),
        charset_instance(sent, "mixed-b", "ISO_IR 144", "MIXED^CASE", "Etude", mixed_study,
                         "Серия"),
    ]  # fmt: skip
    port = free_port()
    process = listen(tmp_path / "archive", port, index)
    try:
        stored = run_dcmtk(
            "storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port),
            *map(str, [*paths.values(), *mixed]),
        )  # fmt: skip
        assert stored.returncode == 0, stored.stderr

        # findscu asks for everything; each response is in the set its values came in.
        responses = findscu(
            port, tmp_path / "all", "QueryRetrieveLevel=STUDY", "PatientName", "PatientID",
            "StudyDescription", "StudyInstanceUID",
        )  # fmt: skip
        by_id = {str(ds.PatientID): ds for ds in responses}
        for name, charset, patient, description, _ in CASES:
            ds = by_id[f"PID-{name}"]
            declared = ds.SpecificCharacterSet
            declared = "\\".join(declared) if not isinstance(declared, str) else declared
            assert declared == charset, name
            assert str(ds.PatientName) == patient, name
            assert str(ds.get("StudyDescription", "")) == description, name
        assert by_id["PID-mixed-a"].SpecificCharacterSet == "ISO_IR 100"
        assert str(by_id["PID-mixed-a"].StudyDescription) == "Étude"

        # The JIS response carries the escape sequences, not UTF-8 or question marks.
        jis = [p for p in sorted((tmp_path / "all").glob("rsp*.dcm"))
               if str(dcmread(p).PatientID) == "PID-jis"]  # fmt: skip
        assert b"\x1b$B" in raw_value(jis[0], (0x0010, 0x0010))

        # Matching on decoded text: a UTF-8 key finds the Latin-1 instance, case aside.
        latin = findscu(
            port, tmp_path / "utf8-key", "SpecificCharacterSet=ISO_IR 192",
            "QueryRetrieveLevel=STUDY", "PatientName=müller^jürgen".encode(), "PatientID",
        )  # fmt: skip
        assert [str(ds.PatientID) for ds in latin] == ["PID-latin1"]
        # A Latin-1 key with a wildcard, in Latin-1 bytes.
        wild = findscu(
            port, tmp_path / "latin1-key", "SpecificCharacterSet=ISO_IR 100",
            "QueryRetrieveLevel=STUDY", "PatientName=MÜLL*".encode("latin-1"), "PatientID",
        )  # fmt: skip
        assert [str(ds.PatientID) for ds in wild] == ["PID-latin1"]
        # A Cyrillic key in ISO_IR 144 finds the Cyrillic study by its description.
        cyr = findscu(
            port, tmp_path / "cyr-key", "SpecificCharacterSet=ISO_IR 144",
            "QueryRetrieveLevel=STUDY", "StudyDescription=Грудная*".encode("iso8859_5"),
            "PatientID", "PatientName",
        )  # fmt: skip
        assert [str(ds.PatientID) for ds in cyr] == ["PID-cyrillic"]
        assert str(cyr[0].PatientName) == CASES[3][2]

        # pynetdicom: the ideographic group alone finds the Japanese patient.
        query = Dataset()
        query.SpecificCharacterSet = "ISO_IR 192"
        query.QueryRetrieveLevel = "STUDY"
        query.PatientName = "山田^太郎"
        query.PatientID = ""
        query.StudyInstanceUID = ""
        found = pynetdicom_find(port, query)
        assert [str(ds.PatientID) for ds in found] == ["PID-jis"]
        assert str(found[0].PatientName) == CASES[2][2]
        assert list(found[0].SpecificCharacterSet) == ["", "ISO 2022 IR 87"]

        # A response mixing two sets (study in Latin-1, series in Cyrillic) is UTF-8.
        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = mixed_study
        query.StudyDescription = ""
        query.SeriesDescription = ""
        query.SeriesInstanceUID = ""
        series = {str(ds.SeriesDescription): ds for ds in pynetdicom_find(port, query)}
        assert set(series) == {"Série", "Серия"}
        assert series["Серия"].SpecificCharacterSet == "ISO_IR 192"
        assert series["Série"].SpecificCharacterSet == "ISO_IR 100"
        assert str(series["Серия"].StudyDescription) == "Étude"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.interop
def test_character_sets_through_storescu_findscu_and_pynetdicom_on_sqlite(tmp_path: Path) -> None:
    scenario(tmp_path, None)


@pytest.mark.interop
def test_character_sets_through_storescu_findscu_and_pynetdicom_on_postgresql(
    tmp_path: Path, postgres: str
) -> None:
    with psycopg.connect(postgres, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS instances, series, studies, patients CASCADE")
    scenario(tmp_path, postgres)


def test_an_index_made_before_character_sets_gains_the_column(tmp_path: Path) -> None:
    """An existing SQLite index is migrated on open; its rows answer in UTF-8 if they need to."""
    import sqlite3

    path = tmp_path / "index.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE patients (pk INTEGER PRIMARY KEY, patient_id TEXT NOT NULL,
            patient_name TEXT, birth_date TEXT, sex TEXT, UNIQUE (patient_id, patient_name));
        CREATE TABLE studies (study_uid TEXT PRIMARY KEY, patient_pk BIGINT NOT NULL,
            study_date TEXT, study_time TEXT, accession_number TEXT, study_id TEXT,
            study_description TEXT, referring_physician TEXT);
        CREATE TABLE series (series_uid TEXT PRIMARY KEY, study_uid TEXT NOT NULL,
            modality TEXT, series_number TEXT, series_description TEXT, body_part TEXT);
        CREATE TABLE instances (sop_instance_uid TEXT PRIMARY KEY, series_uid TEXT NOT NULL,
            sop_class_uid TEXT NOT NULL, instance_number TEXT, path TEXT NOT NULL,
            size BIGINT NOT NULL, transfer_syntax TEXT NOT NULL, sha256 TEXT NOT NULL,
            stored_at DOUBLE PRECISION NOT NULL, source_ae_title TEXT);
        INSERT INTO patients VALUES (1, 'P1', 'Müller^Jürgen', '', '');
        INSERT INTO studies VALUES ('1.2.3', 1, '', '', '', '', '', '');
        """
    )
    old.commit()
    old.close()
    import asyncio

    async def run() -> list[dict[str, str]]:
        index = ArchiveIndex(path, durable=False)
        try:
            return await index.find("STUDY", {"PatientName": ("", "PN")})
        finally:
            await index.close()

    (row,) = asyncio.run(run())
    assert row["PatientName"] == "Müller^Jürgen"
    assert row["SpecificCharacterSet"] == "ISO_IR 192"  # no set recorded: UTF-8 holds it


def test_the_index_records_each_levels_character_set(tmp_path: Path) -> None:
    import asyncio

    from dicomnet.archive.index import entry_from_file

    paths = [
        charset_instance(tmp_path, name, charset, patient, description)
        for name, charset, patient, description, _ in CASES
    ]

    async def run() -> list[dict[str, str]]:
        index = ArchiveIndex(tmp_path / "index.sqlite", durable=False)
        try:
            for path in paths:
                entry = entry_from_file(path, path.stat().st_size, "1.2.840.10008.1.2.1", "")
                await index.add(IndexEntry(**{**_fields(entry), "path": str(path)}))
            return await index.find(
                "IMAGE", {"PatientName": ("", "PN"), "StudyDescription": ("", "LO")}
            )
        finally:
            await index.close()

    rows = {row["PatientName"]: row for row in asyncio.run(run())}
    for _, charset, patient, description, _ in CASES:
        assert rows[patient]["SpecificCharacterSet"] == charset
        assert rows[patient]["StudyDescription"] == description


def _fields(entry: IndexEntry) -> dict[str, object]:
    return {name: getattr(entry, name) for name in entry.__dataclass_fields__}


@pytest.mark.parametrize(
    ("sets", "values", "expected"),
    [
        (["ISO_IR 100"], ["Müller"], "ISO_IR 100"),
        (["ISO_IR 100", "ISO_IR 100"], ["Müller"], "ISO_IR 100"),
        (["ISO_IR 100", "ISO_IR 144"], ["Müller", "Серия"], "ISO_IR 192"),
        (["", None], ["DOE^JANE"], ""),
        (["", None], ["Müller"], "ISO_IR 192"),
        (["ISO_IR 100"], ["山田"], "ISO_IR 192"),  # cannot be written in Latin-1
        (["\\ISO 2022 IR 87"], ["Yamada^Tarou=山田^太郎"], "\\ISO 2022 IR 87"),
        (["", "ISO_IR 144"], ["Грудная", "DOE"], "ISO_IR 144"),
    ],
)
def test_response_character_set(sets, values, expected) -> None:
    assert response_character_set(sets, values) == expected


def test_can_encode_with_code_extensions() -> None:
    assert can_encode("Yamada^Tarou=山田^太郎", "\\ISO 2022 IR 87")
    assert not can_encode("Müller", "\\ISO 2022 IR 87")
    assert can_encode("Müller", "ISO_IR 100")
    assert not can_encode("Серия", "ISO_IR 100")
