"""A hook of the documentation site: every public object of the API reference has a docstring.

mkdocstrings renders an object without a docstring as a bare signature and says
nothing. This hook reads each ``::: identifier`` of ``docs/api.md``, loads the
package statically (griffe, no import), and logs a warning for each public
class, function or method there that has no docstring, so that
``mkdocs build --strict`` fails on it. Module constants are exempt: their
names (``STUDY_ROOT_FIND``...) are their documentation.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import griffe

log = logging.getLogger("mkdocs.hooks.docstrings")


def missing_docstrings(identifiers: list[str], search_path: Path) -> list[str]:
    """Paths of the public objects under ``identifiers`` that have no docstring."""
    package = griffe.load("dicomnet", search_paths=[str(search_path)], resolve_aliases=True,
                          resolve_external=False)
    missing: list[str] = []

    def target(obj: Any) -> Any:
        return obj.final_target if obj.is_alias else obj

    def check(obj: Any) -> None:
        obj = target(obj)
        if obj.is_attribute:
            return
        if not obj.docstring:
            missing.append(obj.path)
        if obj.is_class:
            for name, member in obj.members.items():
                if name.startswith("_") or member.is_alias or member.is_attribute:
                    continue
                if not member.docstring:
                    missing.append(member.path)

    for identifier in identifiers:
        module = package if identifier == "dicomnet" else package[identifier.split(".", 1)[1]]
        if not module.docstring:
            missing.append(module.path)
        names = [str(name) for name in module.exports] if module.exports else [
            name for name in module.members if not name.startswith("_")
        ]
        for name in names:
            if name != "__version__":
                check(module[name])
    return missing


def on_pre_build(config: Any) -> None:
    """mkdocs hook: warn (a failure under --strict) for each public object without a docstring."""
    docs = Path(config["docs_dir"])
    identifiers = re.findall(r"^::: ([\w.]+)", (docs / "api.md").read_text(), re.MULTILINE)
    for path in missing_docstrings(identifiers, docs.parent / "src"):
        log.warning("no docstring: %s (the API reference would show a bare signature)", path)
