"""Compact JSON text, through :mod:`orjson` when it is installed (the head's hot paths: every
stored job document, every answer, every agent message; several times the standard
library's speed) and :mod:`json` otherwise, or for what orjson refuses.

The text means the same either way: no spaces, keys in insertion order, non-ASCII characters
as they are (UTF-8) from orjson and escaped from :mod:`json`. What orjson cannot write (a
string holding a lone surrogate, an integer beyond 64 bits, a key that is not a string) or
read (``NaN`` and ``Infinity``, such an integer or surrogate) goes to :mod:`json`, which
answers as it always did. One difference:
a float that is not finite is written as ``null`` (orjson's rule; JSON has no such number).
Standard library only without orjson: the node side imports this too.
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the head installs it; an SSH host's bundle has none
    orjson = None  # type: ignore[assignment]

_ENCODER = json.JSONEncoder(separators=(",", ":"))
"""For what orjson refuses: ASCII, so a lone surrogate is written as its escape (text that a
UTF-8 encoder, SQLite's among them, would refuse otherwise)."""


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode("utf-8")
        except TypeError:
            pass
    return _ENCODER.encode(value)


def dumps_bytes(value: Any) -> bytes:
    """``value`` as compact JSON, UTF-8 encoded (a lone surrogate, which only :mod:`json`
    writes, as its escape)."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return _ENCODER.encode(value).encode("ascii")


_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


def _long_number(data: str | bytes) -> bool:
    """A run of 19 digits: an integer orjson might read as a float (beyond 64 bits), where
    :mod:`json` keeps it whole (also inside a string, harmlessly: json reads it then)."""
    if isinstance(data, bytes):
        return _LONG_NUMBER_BYTES.search(data) is not None
    return _LONG_NUMBER.search(data) is not None


def loads_fast(data: str | bytes) -> Any:
    """orjson's reading of ``data``; ValueError when orjson is not there, refuses it or
    might read a number otherwise than :mod:`json` (the caller then reads it its own way)."""
    if orjson is None or _long_number(data):
        raise ValueError("not for orjson")
    return orjson.loads(data)


def loads(data: str | bytes) -> Any:
    """The value of the JSON text ``data``, as :mod:`json` reads it; ValueError if it is not
    JSON."""
    try:
        return loads_fast(data)
    except ValueError:  # what json reads and orjson does not (NaN, long integers): json says
        return json.loads(data)
