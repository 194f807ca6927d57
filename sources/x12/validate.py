"""TR3 validation of 835 files with pyx12 (the optional ``validate`` extra).

remitflow's own parser is deliberately tolerant; operators who want to know whether a payer's
file conforms to 005010X221A1 (and the generator's tests, which must produce conforming files)
use pyx12, the maintained X12 validator, through this one function.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import orjson


class ValidatorUnavailable(RuntimeError):
    """pyx12 is not installed: `pip install 'remitflow[validate]'`."""


@dataclass(frozen=True)
class ValidationReport:
    valid: bool
    errors: list[str] = field(default_factory=list)


def validate_835(path: str | Path) -> ValidationReport:
    """Validate one X12 file against its implementation guide; errors as short strings."""
    try:
        import pyx12.params
        import pyx12.x12n_document
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ValidatorUnavailable("pyx12 is not installed (extra 'validate')") from None
    param = pyx12.params.params()
    fd_997 = io.StringIO()
    fd_json = io.StringIO()
    logger = logging.getLogger("pyx12")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)  # pyx12 logs every error too; the report carries them
    try:
        valid = pyx12.x12n_document.x12n_document(param, str(path), fd_997, None, None, fd_json)
    except Exception as exc:  # pyx12 raises its own engine errors on unusable files
        return ValidationReport(False, [f"pyx12 could not validate the file: {exc}"])
    finally:
        logger.setLevel(previous)
    return ValidationReport(bool(valid), _errors(fd_json.getvalue()))


def _errors(json_text: str) -> list[str]:
    """Every error in pyx12's JSON report (a tree of interchanges, groups, sets, segments)."""
    try:
        tree = orjson.loads(json_text) if json_text.strip() else {}
    except orjson.JSONDecodeError:
        return ["pyx12 wrote an unreadable error report"]
    found: list[str] = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            here = node.get("seg_id") or where
            for err in node.get("errors") or []:
                if isinstance(err, dict):
                    found.append(f"{here} {err.get('err_cde', '')}: {err.get('err_str', '')}")
            for value in node.values():
                if isinstance(value, list | dict):
                    walk(value, str(here))
        elif isinstance(node, list):
            for child in node:
                walk(child, where)

    walk(tree, "")
    return found
