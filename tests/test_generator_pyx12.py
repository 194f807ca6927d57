"""The generated 835 files are valid 005010X221A1, as pyx12 (an independent validator) reads them.

Only the deliberately quirky layouts pyx12 cannot read (no ISA envelope; a line break before
each ``~``) and the files holding a purposely corrupt set are exempt, as the manifest records.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sources.synthetic import generate_dataset
from sources.synthetic.x12_writer import LAYOUTS, PYX12_EXEMPT_LAYOUTS

pyx12_params = pytest.importorskip("pyx12.params")
pyx12_document = pytest.importorskip("pyx12.x12n_document")

pytestmark = pytest.mark.validate


def _errors(doc: Any) -> list[str]:
    """Every error message in pyx12's JSON error report."""
    found: list[str] = []
    if isinstance(doc, dict):
        for err in doc.get("errors") or []:
            found.append(str(err.get("err_str")))
        for value in doc.values():
            found += _errors(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _errors(value)
    return found


def _validate(path: Path) -> tuple[bool, list[str]]:
    report = io.StringIO()
    logging.disable(logging.CRITICAL)  # pyx12 logs every error as well
    try:
        ok = pyx12_document.x12n_document(
            param=pyx12_params.params(),
            src_file=str(path),
            fd_997=None,
            fd_html=None,
            fd_xmldoc=None,
            fd_json=report,
        )
    finally:
        logging.disable(logging.NOTSET)
    return bool(ok), _errors(json.loads(report.getvalue() or "{}"))


def test_standard_layout_835_files_validate_with_pyx12(tmp_path: Path) -> None:
    generate_dataset(tmp_path, hospitals=3, payers=8, days=8, seed=11)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    checked: set[str] = set()
    for name, info in manifest["files"].items():
        if info["kind"] != "x12-835" or info["pyx12_exempt"]:
            continue
        ok, errors = _validate(tmp_path / name)
        assert ok and errors == [], (name, info["layout"], errors[:5])
        checked.add(info["layout"])
    assert checked == set(LAYOUTS) - PYX12_EXEMPT_LAYOUTS


def test_pyx12_does_reject_a_broken_generated_file(tmp_path: Path) -> None:
    """The validation above can fail: a wrong SE count in a generated file is reported."""
    generate_dataset(tmp_path, hospitals=1, payers=2, days=2, seed=5)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    name = next(
        n
        for n, i in manifest["files"].items()
        if i.get("layout") == "standard" and not i["pyx12_exempt"]
    )
    path = tmp_path / name
    text = path.read_text()
    se = text.index("\nSE*") + 1
    end = text.index("~", se)
    path.write_text(text[:se] + "SE*2*" + text[se:end].split("*")[2] + text[end:])
    ok, errors = _validate(path)
    assert not ok and any("SE count" in e for e in errors)
