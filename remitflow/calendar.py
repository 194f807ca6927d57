"""Business days on the US Federal Reserve holiday calendar.

ACH settles only when the Federal Reserve Banks are open, so EFT effective dates, the ±3
business-day ERA release window and the "late after 4 business days" rule all count Fed business
days: weekdays that are not Fed holidays. The calendar is the ``holidays`` package's
``FederalReserve`` market (code ``XFED``), not NYSE (which closes on Good Friday and stays open
on Columbus and Veterans Day) and not the OPM federal calendar (which moves Saturday holidays to
Friday while the Reserve Banks stay open that Friday).
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=64)
def _fed_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("XFED", years=year).keys())


def is_fed_holiday(day: date) -> bool:
    return day in _fed_holidays(day.year)


def is_business_day(day: date) -> bool:
    """A weekday on which the Federal Reserve Banks are open."""
    return day.weekday() < 5 and not is_fed_holiday(day)


def next_business_day(day: date) -> date:
    """``day`` itself when it is a business day, else the first business day after it."""
    while not is_business_day(day):
        day += _ONE_DAY
    return day


def previous_business_day(day: date) -> date:
    """``day`` itself when it is a business day, else the last business day before it."""
    while not is_business_day(day):
        day -= _ONE_DAY
    return day


def business_days(start: date, n: int) -> list[date]:
    """The first ``n`` business days on or after ``start``."""
    days: list[date] = []
    day = start
    while len(days) < n:
        if is_business_day(day):
            days.append(day)
        day += _ONE_DAY
    return days


@lru_cache(maxsize=65536)
def add_business_days(day: date, n: int) -> date:
    """The ``n``-th business day after ``day`` (before it when ``n`` is negative).

    ``day`` itself does not count, whether or not it is a business day: Friday + 1 is the next
    Monday (Tuesday after a Monday holiday), Saturday + 1 is Monday. ``n == 0`` rolls a
    non-business day forward. For ``n != 0``, ``business_days_between(day, result) == n``.
    """
    if n == 0:
        return next_business_day(day)
    step = _ONE_DAY if n > 0 else -_ONE_DAY
    remaining = abs(n)
    while remaining:
        day += step
        if is_business_day(day):
            remaining -= 1
    return day


@lru_cache(maxsize=65536)
def business_days_between(earlier: date, later: date) -> int:
    """How many business days ``later`` is after ``earlier`` (negative when it is before).

    Forward it counts the business days in ``(earlier, later]``: Friday → next Monday is 1, and
    so is Friday → the Tuesday after a Monday holiday. Backward it counts ``[later, earlier)``
    with a minus sign, so that ``business_days_between(d, add_business_days(d, n)) == n`` for
    every ``d`` and every ``n != 0``.
    """
    if later < earlier:
        count = 0
        day = later
        while day < earlier:
            if is_business_day(day):
                count += 1
            day += _ONE_DAY
        return -count
    count = 0
    day = earlier
    while day < later:
        day += _ONE_DAY
        if is_business_day(day):
            count += 1
    return count
