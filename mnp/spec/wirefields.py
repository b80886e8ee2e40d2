"""Reading the fields of an agent's message as strictly as a client request's.

A :class:`Fields` reads one JSON object: each accessor checks the type, range, length or
allowed values of one field and returns it, recording a :class:`~mnp.errors.FieldError`
(``events[2].stream: must be one of stdout, stderr``) instead of raising, so that
:meth:`Fields.done` reports every problem of a message at once. No coercion: ``"4"`` is not
an integer and ``1`` is not a boolean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Any

from mnp.errors import FieldError, InvalidInput

SAFE_INT = 2**53 - 1
"""The largest integer every JSON reader keeps exactly."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MISSING = object()


class Fields:
    """The fields of ``body`` (at ``path`` in the message); errors go to ``errors``."""

    def __init__(self, body: Any, path: str = "", errors: list[FieldError] | None = None) -> None:
        self.path = path
        self.errors = [] if errors is None else errors
        self.body: dict[str, Any] = body if isinstance(body, dict) else {}
        if not isinstance(body, dict):
            self.errors.append(FieldError(path, "must be an object"))

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, message: str) -> None:
        self.errors.append(FieldError(self.at(key), message))

    def _get(self, key: str, required: bool) -> Any:
        value = self.body.get(key, _MISSING)
        if value is _MISSING or (value is None and not required):
            if required:
                self.fail(key, "required")
            return _MISSING
        return value

    def text(
        self,
        key: str,
        *,
        default: str | None = None,
        required: bool = True,
        most: int = 256,
        pattern: re.Pattern[str] | None = None,
        choices: Collection[str] | None = None,
        control_ok: bool = False,
    ) -> str | None:
        """A string of 1 to ``most`` characters (``""`` only when ``most`` allows free text
        and no pattern), no control characters unless ``control_ok``."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        problem = _text_problem(value, most, pattern, choices, control_ok)
        if problem is None:
            return str(value)
        self.fail(key, problem)
        return default

    def integer(
        self,
        key: str,
        *,
        low: int,
        high: int,
        default: int | None = None,
        required: bool | None = None,
    ) -> int | None:
        """An integer in ``[low, high]``; required unless a ``default`` is given."""
        value = self._get(key, default is None if required is None else required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "must be an integer")
        elif not low <= value <= high:
            self.fail(key, f"must be between {low} and {high}, got {value}")
        else:
            return value
        return default

    def number(self, key: str, *, low: float, high: float, default: float) -> float:
        value = self._get(key, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, "must be a number")
        elif not (math.isfinite(value) and low <= value <= high):
            self.fail(key, f"must be between {low:g} and {high:g}, got {value}")
        else:
            return float(value)
        return default

    def flag(self, key: str) -> bool:
        value = self._get(key, False)
        if value is _MISSING:
            return False
        if not isinstance(value, bool):
            self.fail(key, "must be true or false")
            return False
        return value

    def texts(
        self, key: str, *, most_items: int, most: int, pattern: re.Pattern[str] | None = None
    ) -> list[str]:
        """A list (absent: empty) of strings, each as :meth:`text` with ``pattern``."""
        value = self._get(key, False)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.fail(key, "must be a list of strings")
            return []
        if len(value) > most_items:
            self.fail(key, f"at most {most_items} items, got {len(value)}")
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            problem = _text_problem(item, most, pattern, None, False)
            if problem is None:
                out.append(item)
            else:
                self.errors.append(FieldError(f"{self.at(key)}[{i}]", problem))
        return out

    def obj(self, key: str) -> Fields | None:
        """An object to read with its own :class:`Fields` (absent or null: None)."""
        value = self._get(key, False)
        return None if value is _MISSING else Fields(value, self.at(key), self.errors)

    def objects(self, key: str, *, most_items: int) -> list[Fields]:
        """A list (absent: empty) of objects, each to read with its own :class:`Fields`."""
        value = self._get(key, False)
        if value is _MISSING:
            return []
        if not isinstance(value, list):
            self.fail(key, "must be a list of objects")
            return []
        if len(value) > most_items:
            self.fail(key, f"at most {most_items} items, got {len(value)}")
            return []
        return [Fields(v, f"{self.at(key)}[{i}]", self.errors) for i, v in enumerate(value)]

    def done(self) -> None:
        """Raise :class:`~mnp.errors.InvalidInput` with every problem found so far."""
        if self.errors:
            raise InvalidInput(list(self.errors))


def _text_problem(
    value: Any,
    most: int,
    pattern: re.Pattern[str] | None,
    choices: Collection[str] | None,
    control_ok: bool,
) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if choices is not None and value not in choices:
        return f"must be one of {', '.join(sorted(choices))}"
    if len(value) > most:
        return f"must be at most {most} characters, got {len(value)}"
    if pattern is not None and not pattern.fullmatch(value):
        return f"must match {pattern.pattern}"
    if not control_ok and _CONTROL.search(value):
        return "must not contain control characters"
    return None
