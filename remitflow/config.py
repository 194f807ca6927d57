"""The configuration file: reference data plus the matching tunables, in one TOML document.

``[matching]`` holds :class:`matchers.base.MatchSettings` fields (window, lateness, fee
tolerance, payer-name score, subset bounds); every other table is reference data
(:mod:`remitflow.refdata`). A file with only reference data is a valid configuration.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from matchers.base import MatchSettings
from remitflow.refdata import ReferenceData, ReferenceDataError, parse_reference_data, read_toml


class ConfigError(ValueError):
    """The configuration file is unusable; the message says where."""


Config = tuple[ReferenceData, MatchSettings]


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return ReferenceData(), MatchSettings()
    p = Path(path)
    try:
        doc = read_toml(p, "configuration")
    except ReferenceDataError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(doc, p)


def parse_config_text(text: str, where: str | Path) -> Config:
    """The same checks as :func:`load_config`, on a document kept elsewhere (Redis)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration {where} is not valid TOML: {exc}") from None
    return parse_config(doc, where)


def parse_config(doc: dict[str, Any], where: str | Path) -> Config:
    doc = dict(doc)
    matching = doc.pop("matching", {})
    if not isinstance(matching, dict):
        raise ConfigError(f"configuration {where}: [matching] must be a table")
    try:
        refdata = parse_reference_data(doc, where)
    except ReferenceDataError as exc:
        raise ConfigError(str(exc)) from None
    return refdata, _settings(matching, where)


# Sane ranges: a value outside them is a typo, not a policy (and some would stall the flow).
_BOUNDS: dict[str, tuple[float, float]] = {
    "window_business_days": (0, 30),
    "late_after_business_days": (1, 60),
    "fee_tolerance_abs_cents": (0, 10_000_000),
    "fee_tolerance_pct": (0, 1),
    "payer_name_score": (0, 100),
    "max_subset_candidates": (2, 24),
    "max_subset_size": (2, 8),
}


def _settings(table: dict[str, Any], path: str | Path) -> MatchSettings:
    known = {f.name for f in fields(MatchSettings)}
    defaults = MatchSettings()
    values: dict[str, Any] = {}
    for name, raw in table.items():
        if name not in known:
            raise ConfigError(f"configuration {path}: [matching] has no setting {name!r}")
        where = f"configuration {path}: [matching] {name}"
        default = getattr(defaults, name)
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ConfigError(f"{where} must be a number")
        try:
            number = Decimal(str(raw))
        except InvalidOperation:
            raise ConfigError(f"{where} must be a number") from None
        if not number.is_finite():
            raise ConfigError(f"{where} must be a finite number")
        low, high = _BOUNDS[name]
        if not low <= number <= high:
            raise ConfigError(f"{where} must be between {low} and {high}")
        if isinstance(default, Decimal):
            values[name] = number
        elif isinstance(default, float):
            values[name] = float(number)
        else:
            if number != number.to_integral_value():
                raise ConfigError(f"{where} must be a whole number")
            values[name] = int(number)
    return MatchSettings(**values)
