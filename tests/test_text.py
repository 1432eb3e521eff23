"""printable(): peer-supplied text in a log line stays one line and says what was sent."""

from __future__ import annotations

import logging

import pytest

from dicomnet.core.text import LOG_LIMIT, printable


@pytest.mark.parametrize(
    ("sent", "logged"),
    [
        ("CT01", "CT01"),
        ("EV\r\nFORGED\x1b[2J", "EV\\x0d\\x0aFORGED\\x1b[2J"),
        (b"../\x00\xff\r\n/\\x", "../\\x00\xff\\x0d\\x0a/\\\\x"),
        ("a\x85b\x7fc", "a\\x85b\\x7fc"),  # NEL (C1) and DEL
        ("abc\u202edcba\u2028", "abc\\u202edcba\\u2028"),  # a bidi override, a line separator
        ("\\x1b", "\\\\x1b"),  # sent as four characters: it must not read as an ESC
        ("", ""),
    ],
)
def test_every_unprintable_character_is_escaped(sent: str | bytes, logged: str) -> None:
    assert printable(sent) == logged
    assert printable(sent).isprintable()


def test_quoted_values_keep_their_quotes_unforgeable() -> None:
    assert printable("CT 01", quote=True) == '"CT 01"'
    assert printable('A" called "B', quote=True) == '"A\\" called \\"B"'
    assert printable("", quote=True) == '""'
    assert printable('say "x"') == 'say "x"'  # unquoted: nothing to forge


def test_long_values_are_cut_and_say_so() -> None:
    text = printable("1." + "2" * 1000)
    assert text.endswith(f"...({1002 - LOG_LIMIT} more)")
    assert len(text) < LOG_LIMIT + 20
    assert printable("\r" * 10, limit=4) == "\\x0d" * 4 + "...(6 more)"


def test_a_log_record_built_with_it_is_one_printable_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dicomnet.test"):
        logging.getLogger("dicomnet.test").info("from %s", printable("X\r\nINFO forged line"))
    (record,) = caplog.records
    assert record.getMessage() == "from X\\x0d\\x0aINFO forged line"
    assert record.getMessage().isprintable()
