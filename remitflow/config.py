"""The configuration file: reference data plus the matching tunables, in one TOML document.

``[matching]`` holds :class:`matchers.base.MatchSettings` fields (window, lateness, fee
tolerance, payer-name score, subset bounds); every other table is reference data
(:mod:`remitflow.refdata`). A file with only reference data is a valid configuration.
"""

from __future__ import annotations

from dataclasses import fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from matchers.base import MatchSettings
from remitflow.refdata import ReferenceData, ReferenceDataError, parse_reference_data, read_toml


class ConfigError(ValueError):
    """The configuration file is unusable; the message says where."""


def load_config(path: str | Path | None) -> tuple[ReferenceData, MatchSettings]:
    if path is None:
        return ReferenceData(), MatchSettings()
    p = Path(path)
    try:
        doc = read_toml(p, "configuration")
    except ReferenceDataError as exc:
        raise ConfigError(str(exc)) from None
    matching = doc.pop("matching", {})
    try:
        refdata = parse_reference_data(doc, p)
    except ReferenceDataError as exc:
        raise ConfigError(str(exc)) from None
    return refdata, _settings(matching, p)


def _settings(table: dict[str, Any], path: Path) -> MatchSettings:
    known = {f.name: f for f in fields(MatchSettings)}
    values: dict[str, Any] = {}
    for name, raw in table.items():
        if name not in known:
            raise ConfigError(f"configuration {path}: [matching] has no setting {name!r}")
        default = getattr(MatchSettings(), name)
        try:
            if isinstance(default, Decimal):
                values[name] = Decimal(str(raw))
            elif isinstance(default, float):
                values[name] = float(raw)
            else:
                values[name] = int(raw)
        except (ValueError, TypeError, InvalidOperation):
            raise ConfigError(f"configuration {path}: [matching] {name} must be a number") from None
        if values[name] < 0:
            raise ConfigError(f"configuration {path}: [matching] {name} must not be negative")
    return MatchSettings(**values)
