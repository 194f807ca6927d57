"""Shared fixtures: the real sample files and a parse helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from remitflow.identity import PhiHasher
from sources.base import ParseContext

SAMPLES = Path(__file__).parent / "fixtures" / "samples"


def sample_path(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        raise FileNotFoundError(f"sample {name} is not in {SAMPLES}")
    return path


def sample_bytes(name: str) -> bytes:
    return sample_path(name).read_bytes()


@pytest.fixture
def ctx() -> ParseContext:
    return ParseContext(file="test", phi=PhiHasher(b"test-secret"))
