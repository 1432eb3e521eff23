"""C-FIND attribute matching (PS3.4 C.2.2.2), one key against one stored value.

Theory of operation
-------------------
A query identifier's non-empty values are *matching keys*; the kind of
matching follows from the value and the attribute's VR:

* **universal**: an empty value matches everything (the key is a return key);
* **list of UIDs**: a UI value with backslashes matches any UID in the list;
* **range**: a DA, TM or DT value with one hyphen, ``a-b``, ``a-`` or
  ``-b``, matches values between the bounds inclusive (the encodings of
  these VRs compare as strings once padded to the same precision);
* **wildcard**: ``*`` (any run of characters) and ``?`` (any one character)
  in the text VRs (AE, CS, LO, LT, PN, SH, ST, UC, UR, UT);
* **single value**: anything else, equal after dropping trailing spaces.

Matching works on decoded text: the index keeps each value as Unicode, decoded
with the Specific Character Set (0008,0005) of the instance it came from, and
a key arrives decoded with the requester's. Both sides are put in Unicode
normal form NFC, so a precomposed ``ü`` and ``u`` plus a combining diaeresis
match.

PN values match case-insensitively, as PS3.4 C.2.2.2.1 allows ("insensitive to
some or all aspects of case"); everything else is case-sensitive. A person
name has up to three component groups (alphabetic, ideographic, phonetic,
PS3.5 6.2.1.1) separated by ``=``: a key of one group matches a stored name
when any of its groups matches (``山田^太郎`` finds
``Yamada^Tarou=山田^太郎=やまだ^たろう``); a key of several groups is matched
group by group, an empty key group matching anything. Trailing empty
components (``DOE^JANE^^``) do not count. A stored attribute with several values (ModalitiesInStudy)
matches when any value does. A stored value that is absent or empty matches
only universal and ``*`` keys. Sequence matching is not supported: a sequence
key matches everything, and is returned empty.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["TEXT_VRS", "key_text", "matches"]

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
"""VRs in which ``*`` and ``?`` are wildcards."""

RANGE_VRS = frozenset({"DA", "TM", "DT"})


def matches(key: str, vr: str, stored: str | Sequence[str] | None) -> bool:
    """Whether a stored value satisfies the query key ``key`` of VR ``vr``."""
    key = key.rstrip(" ")
    if key == "" or vr == "SQ":
        return True
    values = [stored] if isinstance(stored, str) or stored is None else list(stored)
    values = [v.rstrip(" ") for v in values if v is not None]
    if vr == "UI" and "\\" in key:
        wanted = {uid.strip() for uid in key.split("\\")}
        return any(v in wanted for v in values)
    if vr in RANGE_VRS and key.count("-") == 1 and not key.startswith("+"):
        low, high = key.split("-")
        return any(v and _in_range(v, low.strip(), high.strip()) for v in values)
    if vr in TEXT_VRS and key.strip("*") == "" and "*" in key:
        return True  # "*" alone matches even an absent value
    key = unicodedata.normalize("NFC", key)
    values = [unicodedata.normalize("NFC", v) for v in values]
    if vr == "PN":
        return any(_person_name_matches(key, v) for v in values if v)
    if vr in TEXT_VRS and ("*" in key or "?" in key):
        pattern = _wildcard(key, False)
        return any(pattern.fullmatch(v) is not None for v in values)
    return any(v == key for v in values)


def _groups(name: str) -> list[str]:
    """The component groups of a person name, trailing empty components dropped."""
    groups = [group.rstrip("^ ") for group in name.split("=")]
    while len(groups) > 1 and groups[-1] == "":
        groups.pop()
    return groups


def _group_matches(key: str, stored: str) -> bool:
    if "*" in key or "?" in key:
        return _wildcard(key, True).fullmatch(stored) is not None
    return key.casefold() == stored.casefold()


def _person_name_matches(key: str, stored: str) -> bool:
    """PS3.4 C.2.2.2.1 and C.2.2.2.4 on person names, group by group."""
    if "=" not in key and ("*" in key or "?" in key):
        # A wildcard key of one group is tried on the whole value and on each group.
        if _wildcard(key, True).fullmatch(stored) is not None:
            return True
    keys, groups = _groups(key), _groups(stored)
    if len(keys) == 1:
        return any(_group_matches(keys[0], group) for group in groups)
    groups += [""] * (len(keys) - len(groups))
    return all(k == "" or _group_matches(k, g) for k, g in zip(keys, groups, strict=False))


def _in_range(value: str, low: str, high: str) -> bool:
    width = max(len(value), len(low), len(high))
    padded = value.ljust(width, "0")
    if low and padded < low.ljust(width, "0"):
        return False
    return not (high and padded > high.ljust(width, "9"))


@lru_cache(maxsize=256)
def _wildcard(key: str, fold_case: bool) -> re.Pattern[str]:
    parts = []
    for char in key:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if fold_case else 0))


def key_text(value: Any) -> str:
    """A query element's value as the key :func:`matches` takes: several values
    joined with backslashes, as they are encoded; None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)
