"""mnp.spec.jsontext: the same JSON through orjson and through the standard library, and the
standard library's answer for what orjson refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from mnp.spec import jsontext

VALUES: list[Any] = [
    {"a": 1, "b": [1, 2.5, None, True], "c": {"d": "é ü 日本"}},
    {"lone": "x\ud800y"},  # a lone surrogate (a \\ud800 escape in a request)
    {"big": 2**70, "neg": -(2**65)},
    {1: "int key", "s": "str key"},
    [],
    "plain",
]


@pytest.fixture(params=["orjson", "stdlib"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(jsontext, "orjson", None)
    else:
        pytest.importorskip("orjson")
    return str(request.param)


@pytest.mark.parametrize("value", VALUES)
def test_text_reads_back_as_the_standard_library_reads_it(engine: str, value: Any) -> None:
    text = jsontext.dumps(value)
    data = jsontext.dumps_bytes(value)
    expected = json.loads(json.dumps(value))
    assert json.loads(text) == expected
    assert json.loads(data) == expected
    assert jsontext.loads(text) == expected
    assert jsontext.loads(data) == expected
    text.encode("utf-8")  # always encodable (SQLite stores it as UTF-8)


def test_key_order_and_compact_form_are_kept(engine: str) -> None:
    assert jsontext.dumps({"z": 1, "a": [1, {"y": 2}]}) == '{"z":1,"a":[1,{"y":2}]}'


def test_what_orjson_refuses_to_read_is_read_by_the_standard_library(engine: str) -> None:
    assert math.isnan(jsontext.loads('{"x": NaN}')["x"])
    long = 123456789012345678901234567890  # orjson would read it as a float
    assert jsontext.loads(f'{{"x": {long}}}')["x"] == long
    assert jsontext.loads(f'{{"x": {long}}}'.encode())["x"] == long
    assert jsontext.loads('{"x": 18446744073709551615}')["x"] == 2**64 - 1
    assert jsontext.loads('"\\ud800"') == "\ud800"
    with pytest.raises(ValueError):
        jsontext.loads("{not json")


def test_the_fast_reader_refuses_rather_than_guesses(engine: str) -> None:
    with pytest.raises(ValueError):
        jsontext.loads_fast('{"x": NaN}')
    if engine == "orjson":
        assert jsontext.loads_fast(b'{"a": [1]}') == {"a": [1]}
    else:
        with pytest.raises(ValueError):
            jsontext.loads_fast(b"{}")
