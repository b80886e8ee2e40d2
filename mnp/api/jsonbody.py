"""The one JSON reader of every door (native API, AWS Batch, CloudWatch Logs, node agents).

:func:`read_json` turns a request body into a JSON object that the rest of the head node can
always encode, store and list again: it refuses a body over a size limit, bytes that are not
UTF-8, JSON that is not an object, nesting deeper than :data:`MAX_DEPTH`, ``NaN`` and
``Infinity`` (and numbers that overflow to them), integers outside 64 bits, and anywhere in a
key or a string a lone surrogate (``"\\ud800"``: valid JSON, but no UTF-8 can carry it, so
the first answer or store write holding it would fail) or a NUL (no command, environment
variable or path can hold one). Each refusal is an :class:`~mnp.errors.InvalidInput` naming
the field (``containerOverrides.environment[0].value: …``); :class:`NotJson` marks the body
that is not a JSON object at all, for doors that answer those with their own code.

:func:`check_value` runs the same checks over a value built some other way (a path, a query).
Pure functions; safe to call from any thread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from starlette.responses import JSONResponse

from mnp.errors import FieldError, InvalidInput
from mnp.spec import jsontext

MAX_DEPTH = 64
"""Objects and arrays inside one another, the body itself being level 1."""
INT_LIMIT = 2**63 - 1
"""SQLite's integers and AWS's ``Long`` are 64-bit signed; nothing larger can be kept."""
MAX_ERRORS = 20
"""A body wrong everywhere is reported with this many problems (then ``…``)."""


class NotJson(InvalidInput):
    """The body is not a JSON object (CloudWatch Logs answers ``SerializationException``)."""


def read_json(
    raw: bytes, *, max_bytes: int, free_text: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``raw`` as a JSON object (``{}`` for an empty body), every check of the module passed.

    ``free_text`` names keys whose string values may hold NUL (an agent's captured output:
    it is written to a file, never executed). Raises :class:`NotJson` or
    :class:`~mnp.errors.InvalidInput`.
    """
    if len(raw) > max_bytes:
        raise NotJson(f"request body must be at most {max_bytes} bytes, got {len(raw)}")
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")  # strict: encoded surrogates are refused here too
    except UnicodeDecodeError as e:
        raise NotJson(f"request body is not valid UTF-8 (byte {e.start})") from None
    try:
        data, by_orjson = _parsed(raw, text)
    except RecursionError:
        raise NotJson(f"request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise NotJson(f"request body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise NotJson("request body must be a JSON object")
    if not by_orjson or _may_break_rules(text):
        check_value(data, free_text=free_text)
    return data


def _parsed(raw: bytes, text: str) -> tuple[Any, bool]:
    """orjson's reading of a strict JSON body when it has one, else the standard library's
    (NaN, numbers beyond a double and lone surrogates orjson refuses; it is given no run of
    19 digits, which it might read as a float: :func:`mnp.spec.jsontext.loads_fast`), and
    whether it was orjson's. The standard library's reading is always walked by the value
    rules; orjson's holds no number they refuse."""
    try:
        return jsontext.loads_fast(raw), True
    except ValueError:
        return _DECODER.decode(text), False


def _may_break_rules(text: str) -> bool:
    """Whether the JSON ``text``, read by orjson, could hold anything the value rules refuse;
    False lets :func:`read_json` skip the walk over every value (most bodies).

    orjson's reading holds no integer beyond 64 bits (it is given no run of 19 digits), no
    infinite number and no lone surrogate (it refuses both). A NUL in a string can only come
    from a ``\\u`` escape (strict JSON refuses a raw one), and nesting deeper than
    :data:`MAX_DEPTH` needs that many ``{`` or ``[``. Each is a C-speed scan; a hit (also
    inside a string, harmlessly) means the full check."""
    return "\\u" in text or text.count("{") + text.count("[") > MAX_DEPTH


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
"""Made once: ``json.loads`` with any option makes a decoder per call."""


def check_value(value: Any, path: str = "", free_text: frozenset[str] = frozenset()) -> None:
    """Raise :class:`~mnp.errors.InvalidInput` listing every problem of :func:`read_json`'s
    value rules in ``value`` (depth, numbers, keys and strings), each at its field path."""
    errors = list(_problems(value, path, free_text))
    if errors:
        shown = errors[:MAX_ERRORS]
        if len(errors) > MAX_ERRORS:
            shown.append(FieldError("", f"… and {len(errors) - MAX_ERRORS} more"))
        raise InvalidInput(shown)


def text_problem(s: str, nul_ok: bool = False) -> str | None:
    """Why ``s`` cannot be kept (a lone surrogate, a NUL), or None when it can."""
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"must be valid Unicode text: lone surrogate {s[e.start]!r} at {e.start}"
    if not nul_ok and "\0" in s:
        return f"must not contain NUL (at {s.index(chr(0))})"
    return None


def _problems(root: Any, root_path: str, free_text: frozenset[str]) -> Iterator[FieldError]:
    # An explicit stack, not recursion: the depth is what is being checked.
    stack: list[tuple[Any, str, int, bool]] = [(root, root_path, 1, False)]
    while stack:
        value, path, depth, nul_ok = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                shown = path if len(path) <= 120 else path[:120] + "…"
                yield FieldError(shown, f"nests deeper than {MAX_DEPTH} levels")
                continue
            if isinstance(value, list):
                for i in reversed(range(len(value))):
                    stack.append((value[i], f"{path}[{i}]", depth + 1, nul_ok))
                continue
            for key in reversed(list(value)):
                problem = text_problem(key)
                if problem is not None:
                    yield FieldError(f"{path}.{key!r}" if path else repr(key), f"key {problem}")
                    continue
                child = f"{path}.{key}" if path else key
                stack.append((value[key], child, depth + 1, key in free_text))
        elif isinstance(value, str):
            problem = text_problem(value, nul_ok)
            if problem is not None:
                yield FieldError(path, problem)
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not -INT_LIMIT - 1 <= value <= INT_LIMIT:
                yield FieldError(path, "integers must fit in 64 bits")
        elif isinstance(value, float) and not math.isfinite(value):
            yield FieldError(path, "numbers must be finite")


class Answered(JSONResponse):
    """A :class:`JSONResponse`, its body compact (:func:`mnp.spec.jsontext.dumps_bytes`,
    orjson's speed; Starlette's own makes a :mod:`json` encoder per answer); every door's
    answers."""

    def render(self, content: Any) -> bytes:
        return jsontext.dumps_bytes(content)
