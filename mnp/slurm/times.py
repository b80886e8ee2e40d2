"""Times the Slurm way: squeue's TIME, sacct's Elapsed and timestamps, ``--starttime`` values.

Pure functions; "now" and the time zone are arguments, so tests need no clock.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo

_RELATIVE = re.compile(r"^now(?:([+-])(\d+)([a-z]*))?$")
_UNITS = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_NAMED = {"midnight": time(0), "noon": time(12), "elevenses": time(11), "fika": time(15),
          "teatime": time(16)}  # fmt: skip
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:t(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,2})(?:/(\d{2}))?$")
_MMDDYY = re.compile(r"^(\d{2})(\d{2})(\d{2})?$")
TIME_FORMATS = (
    "YYYY-MM-DD[THH:MM[:SS]], HH:MM[:SS], MM/DD[/YY], MMDD[YY], now[{+|-}N[units]], "
    "today, midnight, noon or teatime"
)


def squeue_time(seconds: int) -> str:
    """squeue's TIME / TIME_LIMIT: ``M:SS``, ``H:MM:SS`` or ``D-HH:MM:SS`` (negative → 0)."""
    s = max(0, int(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d}-{h:02d}:{m:02d}:{sec:02d}"
    if h:
        return f"{h}:{m:02d}:{sec:02d}"
    return f"{m}:{sec:02d}"


def sacct_elapsed(seconds: int) -> str:
    """sacct's Elapsed / Timelimit: ``HH:MM:SS``, or ``D-HH:MM:SS`` from one day on."""
    s = max(0, int(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    clock = f"{h:02d}:{m:02d}:{sec:02d}"
    return f"{d}-{clock}" if d else clock


def timestamp(ms: int | None, tz: tzinfo | None) -> str:
    """sacct's Submit/Start/End: ``YYYY-MM-DDTHH:MM:SS`` in ``tz``; ``Unknown`` when unset."""
    if ms is None:
        return "Unknown"
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%dT%H:%M:%S")


def _date(year: int, month: int, day: int, text: str) -> datetime:
    try:
        return datetime(year, month, day)
    except ValueError as exc:
        raise ValueError(f"time {text!r}: {exc}") from None


def _clock(h: str, m: str, s: str | None, text: str) -> time:
    try:
        return time(int(h), int(m), int(s or 0))
    except ValueError as exc:
        raise ValueError(f"time {text!r}: {exc}") from None


def parse_slurm_time(text: str, now: datetime) -> datetime:
    """A sacct ``--starttime``/``--endtime`` value as an aware datetime in ``now``'s zone.

    ``now`` must be aware. Dates without a time mean their midnight, times without a date mean
    today, ``MM/DD`` and ``MMDD`` without a year mean this year, ``now-2hours`` counts back
    (units: seconds (default), minutes, hours, days, weeks and their abbreviations).
    Raises ValueError naming the accepted formats.
    """
    t = text.strip().lower()
    zone = now.tzinfo
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if m := _RELATIVE.match(t):
        sign, count, unit = m.groups()
        if sign is None:
            return now
        if unit not in _UNITS:
            raise ValueError(f"time {text!r}: unknown unit {unit!r}")
        delta = timedelta(seconds=int(count) * _UNITS[unit])
        return now + delta if sign == "+" else now - delta
    if t == "today":
        return today
    if t in _NAMED:
        return datetime.combine(today.date(), _NAMED[t], zone)
    if m := _DATE_TIME.match(t):
        y, mo, d, hh, mm, ss = m.groups()
        day = _date(int(y), int(mo), int(d), text)
        clock = _clock(hh, mm, ss, text) if hh is not None else time(0)
        return datetime.combine(day.date(), clock, zone)
    if m := _CLOCK.match(t):
        hh, mm, ss = m.groups()
        return datetime.combine(today.date(), _clock(hh, mm, ss, text), zone)
    if m := _SLASHED.match(t) or _MMDDYY.match(t):
        mo, d, yy = m.groups()
        year = 2000 + int(yy) if yy else now.year
        return datetime.combine(_date(year, int(mo), int(d), text).date(), time(0), zone)
    raise ValueError(f"time {text!r} must look like {TIME_FORMATS}")
