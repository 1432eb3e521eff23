"""Specific Character Set (0008,0005) of C-FIND responses built from an index.

Theory of operation
-------------------
The archive index stores each instance's text attributes decoded to Unicode,
and the Specific Character Set they were decoded with, at every level
(patient, study, series, instance), since each level's values came from one
instance. A C-FIND response carries values from its own level and the levels
above it, so it may hold values of several origins.

PS3.4 C.4.1.1.3.2 asks that a response's Specific Character Set describe the
response itself, whatever the request declared. :func:`response_character_set`
picks it: the stored set when every value in the response came under the
same one and can be encoded in it again, ``ISO_IR 192`` (UTF-8, which holds
every character) when the values came under different sets or one of them
cannot be encoded in the set they are declared in (a row indexed before the
set was recorded), and no declaration at all when everything is in the
default repertoire (ASCII) and came under the default set.

pydicom then encodes the response in the declared set, code extensions
(ISO 2022 escape sequences, PS3.5 6.1.2.5) included.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

__all__ = ["UTF8", "can_encode", "normalize_character_set", "response_character_set"]

UTF8 = "ISO_IR 192"
"""The Defined Term of Unicode in UTF-8 (PS3.3 C.12.1.1.2)."""


def normalize_character_set(value: object) -> str:
    """A Specific Character Set as its encoded text: terms joined by backslashes.

    pydicom gives a multi-valued (0008,0005) as a list; the index keeps the
    text as it appears on the wire (``\\ISO 2022 IR 87``).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        terms = value.split("\\")
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        terms = [str(term) for term in value]  # type: ignore[attr-defined]
    else:
        terms = [str(value)]
    terms = [term.strip(" \x00") for term in terms]
    while terms and terms[-1] == "" and len(terms) > 1:
        terms.pop()
    return "\\".join(terms)


@lru_cache(maxsize=64)
def _encodings(character_set: str) -> tuple[str, ...]:
    from pydicom.charset import convert_encodings

    terms = character_set.split("\\")
    encodings = convert_encodings(terms)
    # The default repertoire is ASCII (PS3.5 6.1.2.1); pydicom reads it as Latin-1.
    return tuple(
        "ascii" if term in _DEFAULT_TERMS else encoding
        for term, encoding in zip(terms, encodings, strict=False)
    )


_DEFAULT_TERMS = frozenset({"", "ISO_IR 6", "ISO 2022 IR 6"})


def can_encode(text: str, character_set: str) -> bool:
    """Whether ``text`` can be written in ``character_set`` without loss.

    With code extensions (several terms) each character may come from any of
    the sets, switched with escape sequences, as pydicom encodes them.
    """
    if text.isascii():
        return True
    try:
        encodings = _encodings(character_set)
    except LookupError:
        return False
    from pydicom.charset import custom_encoders

    def encodable(part: str, encoding: str) -> bool:
        encoder = custom_encoders.get(encoding)
        try:
            if encoder is not None:
                encoder(part, errors="strict")
            else:
                part.encode(encoding)
        except (UnicodeError, ValueError):
            return False
        return True

    if any(encodable(text, encoding) for encoding in encodings):
        return True
    if len(encodings) == 1:
        return False
    return all(any(encodable(char, enc) for enc in encodings) for char in text)


def _texts(values: Iterable[object]) -> Iterable[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (str(v) for v in value)


def response_character_set(character_sets: Iterable[str | None], values: Iterable[object]) -> str:
    """The Specific Character Set a response of ``values`` declares ("" for none).

    ``character_sets`` are those the values were decoded with (None or "" for
    the default repertoire, or for a row that did not record one).
    """
    declared = {normalize_character_set(cs) for cs in character_sets if cs}
    texts = [text for text in _texts(values) if not text.isascii()]
    if len(declared) > 1:
        return UTF8
    if not declared:
        return UTF8 if texts else ""
    (character_set,) = declared
    if all(can_encode(text, character_set) for text in texts):
        return character_set
    return UTF8
