"""BAI2 (BAI Cash Management Balance Reporting v2) bank statements → bank transactions."""

from sources.bai2.parser import parse, parse_bytes

__all__ = ["parse", "parse_bytes"]
