"""A subset of EventBridge's event patterns, enough to route job state changes.

A pattern is a JSON object mirroring the event: each key either holds a nested pattern (an
object) or a list of *matchers*, any one of which must match the event's value there. A
matcher is an exact value (string, number, boolean, null), ``{"prefix": "..."}``,
``{"suffix": "..."}``,
``{"anything-but": value | [values] | {"prefix": "..."}}``, or ``{"exists": true|false}``.
An event value that is a list matches when any of its items does. Keys the pattern does not
name are not looked at; an empty pattern matches every event.

Example: failed jobs of queue ``gpu`` (the event names its queue by ARN, whatever region
and account the head shows, so a name is matched as the ARN's end)::

    {"detail": {"jobQueue": [{"suffix": ":job-queue/gpu"}], "status": ["FAILED"]}}
"""

from __future__ import annotations

from typing import Any

from mnp.errors import FieldError, InvalidInput

_MISSING = object()
_OPERATORS = ("prefix", "suffix", "anything-but", "exists")


def validate(pattern: Any, path: str = "pattern") -> None:
    """Raise InvalidInput (naming the place) unless ``pattern`` is a pattern this module
    understands."""
    errors: list[FieldError] = []
    _check(pattern, path, errors)
    if errors:
        raise InvalidInput(errors)


def _check(pattern: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(pattern, dict):
        errors.append(FieldError(path, "must be an object"))
        return
    for key, value in pattern.items():
        where = f"{path}.{key}"
        if isinstance(value, dict):
            _check(value, where, errors)
        elif isinstance(value, list):
            if not value:
                errors.append(FieldError(where, "must list at least one value"))
            for i, m in enumerate(value):
                _check_matcher(m, f"{where}[{i}]", errors)
        else:
            errors.append(FieldError(where, "must be an object or a list of values"))


def _check_matcher(m: Any, path: str, errors: list[FieldError]) -> None:
    if not isinstance(m, dict):
        if isinstance(m, list):
            errors.append(FieldError(path, "a value may not be a list"))
        return
    if len(m) != 1 or next(iter(m)) not in _OPERATORS:
        errors.append(FieldError(path, f"must be a value or one of {', '.join(_OPERATORS)}"))
        return
    op, arg = next(iter(m.items()))
    if op in ("prefix", "suffix") and not isinstance(arg, str):
        errors.append(FieldError(path, f"{op} takes a string"))
    elif op == "exists" and not isinstance(arg, bool):
        errors.append(FieldError(path, "exists takes true or false"))
    elif (
        op == "anything-but"
        and isinstance(arg, dict)
        and (list(arg) != ["prefix"] or not isinstance(arg["prefix"], str))
    ):
        errors.append(FieldError(path, "anything-but takes values or {prefix: string}"))


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Whether ``event`` matches ``pattern`` (a valid one: :func:`validate`)."""
    for key, want in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(want, dict):
            if value is _MISSING or not matches(want, value):
                return False
        elif not any(_matcher(m, value) for m in want):
            return False
    return True


def _matcher(m: Any, value: Any) -> bool:
    if isinstance(m, dict):
        op, arg = next(iter(m.items()))
        if op == "exists":
            return (value is not _MISSING) is bool(arg)
        if value is _MISSING:
            return False
        values = value if isinstance(value, list) else [value]
        if op == "prefix":
            return any(isinstance(v, str) and v.startswith(arg) for v in values)
        if op == "suffix":
            return any(isinstance(v, str) and v.endswith(arg) for v in values)
        # anything-but: no item may be one of the excluded
        if isinstance(arg, dict):
            return all(not (isinstance(v, str) and v.startswith(arg["prefix"])) for v in values)
        excluded = arg if isinstance(arg, list) else [arg]
        return all(not _equal(v, x) for v in values for x in excluded)
    if value is _MISSING:
        return False
    values = value if isinstance(value, list) else [value]
    return any(_equal(v, m) for v in values)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 and 1.0 are equal, True and 1 are not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def simple_pattern(
    queues: list[str], statuses: list[str], reason_prefixes: list[str]
) -> dict[str, Any]:
    """The pattern the CLI's ``--queue/--status/--reason-prefix`` options mean: the job's
    queue (by name: the end of its ARN), status and status-reason prefix."""
    detail: dict[str, Any] = {}
    if queues:
        detail["jobQueue"] = [{"suffix": f":job-queue/{q}"} for q in queues]
    if statuses:
        detail["status"] = [s.upper() for s in statuses]
    if reason_prefixes:
        detail["statusReason"] = [{"prefix": p} for p in reason_prefixes]
    return {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"], "detail": detail}
