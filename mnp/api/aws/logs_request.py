"""The Logs JSON 1.1 request side: the one log group, field checks with AWS's messages, tokens.

Every check raises :class:`LogsError` with the code and wording CloudWatch Logs uses
(``InvalidParameterException`` for a bad field, ``ResourceNotFoundException`` for an unknown
group or stream), which :mod:`mnp.api.aws.logs` sends as a 400.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from mnp.nodes.logstreams import Position
from mnp.spec.arns import ACCOUNT, REGION, prefix

JSON = dict[str, Any]
GROUP = "/aws/batch/job"
GROUP_ARN = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{GROUP}"
"""The group's ARN when no region or account is configured (:func:`group_arn`: the caller's)."""


def group_arn() -> str:
    """The group's ARN in the region the request was signed for and the head's account."""
    return f"{prefix('logs')}:log-group:{GROUP}"


MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
EVENT_OVERHEAD = 26
"""Bytes CloudWatch counts per event on top of its message, toward ``MAX_BYTES``."""
DESCRIBE_LIMIT = 50

STREAM_NOT_FOUND = "The specified log stream does not exist."
GROUP_NOT_FOUND = "The specified log group does not exist."
BAD_TOKEN = "The specified nextToken is invalid."


class LogsError(Exception):
    """A refusal in CloudWatch Logs' terms: error code (``__type``), message, HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def invalid(message: str) -> LogsError:
    return LogsError("InvalidParameterException", message)


def not_found(message: str) -> LogsError:
    return LogsError("ResourceNotFoundException", message)


# --- request fields ------------------------------------------------------------------------
def constraint(name: str, value: Any, rule: str) -> LogsError:
    return invalid(
        f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
        f"constraint: {rule}"
    )


def int_field(body: JSON, name: str, low: int = 0, high: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint(name, value, "Member must be a number")
    if value < low:
        raise constraint(name, value, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        raise constraint(name, value, f"Member must have value less than or equal to {high}")
    return value


def str_field(body: JSON, name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise constraint(name, "null", "Member must not be null")
        return None
    if not isinstance(value, str):
        raise constraint(name, value, "Member must be a string")
    return value


def bool_field(body: JSON, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise constraint(name, value, "Member must be a boolean")
    return value


def check_group(body: JSON) -> None:
    """The request names the one log group, by name or ARN (exactly one of the two)."""
    name = str_field(body, "logGroupName")
    ident = str_field(body, "logGroupIdentifier")
    if name is not None and ident is not None:
        raise invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if name is None and ident is None:
        raise invalid("Either LogGroupName or LogGroupIdentifier must be specified.")
    if ident is not None and ident.startswith("arn:"):
        parts = ident.removesuffix(":*").split(":", 6)
        name = parts[6] if len(parts) == 7 and parts[5] == "log-group" else ""
    if (name if name is not None else ident) != GROUP:
        raise not_found(GROUP_NOT_FOUND)


# --- tokens --------------------------------------------------------------------------------
def encode_token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def decode_token(token: str | None) -> Any:
    if token is None:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise invalid(BAD_TOKEN) from None


_POSITION = re.compile(r"([fb])/(\d{28})(\d{28})")


def position_token(direction: str, pos: Position) -> str:
    """``f/…`` or ``b/…`` and 56 digits, as CloudWatch's tokens look."""
    return f"{direction}/{pos[0]:028d}{pos[1]:028d}"


def parse_position(token: str) -> tuple[str, Position]:
    m = _POSITION.fullmatch(token)
    if m is None:
        raise invalid(BAD_TOKEN)
    return m.group(1), (int(m.group(2)), int(m.group(3)))
