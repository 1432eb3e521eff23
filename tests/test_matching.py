"""C-FIND attribute matching, PS3.4 C.2.2.2."""

from __future__ import annotations

import pytest

from dicomnet.dataset.matching import matches


@pytest.mark.parametrize(
    ("key", "vr", "stored", "expected"),
    [
        # universal
        ("", "PN", "DOE^JANE", True),
        ("", "LO", None, True),
        # single value
        ("P1", "LO", "P1", True),
        ("P1", "LO", "P12", False),
        ("P1 ", "LO", "P1", True),
        ("CT", "CS", "ct", False),
        ("doe^jane", "PN", "DOE^JANE", True),
        ("P1", "LO", None, False),
        ("P1", "LO", "", False),
        # wildcard
        ("DOE*", "PN", "DOE^JANE", True),
        ("doe*", "PN", "DOE^JANE", True),
        ("*JANE", "PN", "DOE^JANE", True),
        ("D?E^*", "PN", "DOE^JANE", True),
        ("D?E^*", "PN", "DOOE^JANE", False),
        ("*", "LO", None, True),
        ("*", "LO", "", True),
        ("A.B*", "LO", "AXB1", False),
        ("CT*", "CS", "ct1", False),
        ("1.2.*", "UI", "1.2.3", False),
        # lists of UIDs
        ("1.2.3\\1.2.4", "UI", "1.2.4", True),
        ("1.2.3\\1.2.4", "UI", "1.2.5", False),
        # ranges
        ("20200101-20200131", "DA", "20200115", True),
        ("20200101-20200131", "DA", "20200201", False),
        ("20200101-", "DA", "20991231", True),
        ("-20200101", "DA", "20200101", True),
        ("-20200101", "DA", "20200102", False),
        ("20200101-20200131", "DA", "", False),
        ("0930-1000", "TM", "100015", True),
        ("0930-1000", "TM", "100100", False),
        ("0930-1000", "TM", "092959", False),
        ("20200101", "DA", "20200101", True),
        # multi-valued stored attributes
        ("MR", "CS", ["CT", "MR"], True),
        ("PT", "CS", ["CT", "MR"], False),
        # sequences are not matched
        ("", "SQ", None, True),
        # person names: component groups, case, trailing components, Unicode forms
        ("山田^太郎", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("やまだ^たろう", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("yamada^tarou", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("=山田^太郎", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("=山田^次郎", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", False),
        ("Yamada^Tarou=山田^次郎", "PN", "Yamada^Tarou=山田^太郎", False),
        ("山田*", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("Yamada*", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", True),
        ("山本*", "PN", "Yamada^Tarou=山田^太郎=やまだ^たろう", False),
        ("MÜLLER^JÜRGEN", "PN", "Müller^Jürgen", True),
        ("Müller^Jürgen", "PN", "Müller^Jürgen^^^", True),
        ("Mu\u0308ller*", "PN", "Müller^Jürgen", True),
        ("Muller^Jurgen", "PN", "Müller^Jürgen", False),
        ("иванов^иван", "PN", "Иванов^Иван", True),
        ("Грудная*", "LO", "Грудная клетка", True),
        ("грудная*", "LO", "Грудная клетка", False),
    ],
)
def test_matching(key: str, vr: str, stored, expected: bool) -> None:
    assert matches(key, vr, stored) is expected
