"""read_json's quick screen (``_may_break_rules``) never lets a refused body through: every
body the full value walk refuses is refused with the screen on, naming the same fields."""

from __future__ import annotations

import json

import pytest

from mnp.api import jsonbody
from mnp.api.jsonbody import check_value, read_json
from mnp.errors import InvalidInput
from mnp.spec import jsontext

REFUSED = [
    b'{"a": "x\\u0000y"}',
    b'{"a": {"b": ["\\ud800"]}}',
    b'{"\\udfff": 1}',
    b'{"n": 9223372036854775808}',
    b'{"n": -9223372036854775809}',
    b'{"f": 1e400}',
    b'{"f": -2E+308}',
    b'{"f": [1e400]}',
    b'{"f": 1.5e0400 , "g": 1}',
    b'{"f": 2E+308\n}',
    b'{"d": ' + b"[" * 70 + b"]" * 70 + b"}",
    b'{"f": ' + b"9" * 400 + b".0}",
]


def full_walk_paths(raw: bytes) -> list[str]:
    data = json.loads(raw)
    with pytest.raises(InvalidInput) as e:
        check_value(data)
    return [fe.path for fe in e.value.errors]


@pytest.mark.parametrize("raw", REFUSED)
def test_what_the_full_walk_refuses_read_json_refuses_at_the_same_fields(raw: bytes) -> None:
    text = raw.decode()
    _, by_orjson = jsonbody._parsed(raw, text)
    assert not by_orjson or jsonbody._may_break_rules(text)  # walked either way
    with pytest.raises(InvalidInput) as e:
        read_json(raw, max_bytes=1 << 20)
    assert [fe.path for fe in e.value.errors] == full_walk_paths(raw)


def test_an_ordinary_submit_skips_the_walk_and_is_kept_whole() -> None:
    body = {
        "jobName": "x1",
        "jobQueue": "default",
        "jobDefinition": "t:3",
        "containerOverrides": {
            "command": ["echo", "héllo ✓"],
            "environment": [{"name": "A", "value": "1"}],
        },
        "timeout": {"attemptDurationSeconds": 3600},
        "mnp": {"idempotencyToken": "k" * 36},
    }
    text = json.dumps(body, ensure_ascii=False)
    assert not jsonbody._may_break_rules(text)
    assert read_json(text.encode(), max_bytes=1 << 20) == body


def test_an_escaped_backslash_before_u_is_screened_and_then_accepted() -> None:
    raw = b'{"path": "C:\\\\users", "n": 1234567890123456789}'
    assert jsonbody._may_break_rules(raw.decode())  # a false alarm costs only the walk
    assert read_json(raw, max_bytes=1 << 20) == {"path": "C:\\users", "n": 1234567890123456789}


def test_hex_ids_with_an_e_and_digits_skip_the_walk() -> None:
    # what an agent's poll carries: attempt ids in hex, "e" then three digits inside
    body = {"node_id": "n-1", "running": ["01a2378a-8fe8-71f2-8e123-cd92c8e456d9:1"],
            "epoch": 3, "note": "3e456a, 7E+999x"}
    text = json.dumps(body)
    assert not jsonbody._may_break_rules(text)
    assert read_json(text.encode(), max_bytes=1 << 20) == body


@pytest.mark.parametrize("raw", REFUSED)
def test_without_orjson_every_body_is_walked(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jsontext, "orjson", None)
    with pytest.raises(InvalidInput) as e:
        read_json(raw, max_bytes=1 << 20)
    assert [fe.path for fe in e.value.errors] == full_walk_paths(raw)
