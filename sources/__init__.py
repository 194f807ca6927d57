"""Parsers that turn remittance, bank and ERP files into canonical events.

Every parser is a generator of :data:`sources.base.Parsed` items: events, dead letters for the
parts it could not read, and parse issues for what it read but found wrong. None of them raises
on bad data.
"""
