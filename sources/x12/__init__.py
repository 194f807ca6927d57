"""X12 835 remittance advice: tokenizer and canonical-event parser."""

from sources.x12.era835 import parse, parse_bytes
from sources.x12.tokenizer import Delimiters, X12Tokenizer, sniff_delimiters

__all__ = ["Delimiters", "X12Tokenizer", "parse", "parse_bytes", "sniff_delimiters"]
