"""Waiting by condition: poll with a deadline and say what was awaited when it passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Abort(Exception):
    """Raised by a ``wait_for`` condition to stop waiting at once."""


def wait_for(what: str, check: Callable[[], T | None], timeout: float,
             interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; raise at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Abort:
            raise
        except Exception as e:  # the condition may raise while things start up
            last = e
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
