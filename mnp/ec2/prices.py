"""On-Demand prices (USD per hour) the chooser ranks instance types by.

AWS Batch prefers "the lowest-cost instance type" (BEST_FIT) or "instance types with lower
cost vCPUs" (BEST_FIT_PROGRESSIVE), so mnp needs a price per type. The bundled
``prices.json`` holds one region's Linux On-Demand list prices, entered by hand (its
``source`` and ``asOf`` say where from and when); it is a ranking aid, not a bill.

A user replaces the whole table with a file of the same shape: the ``path`` argument of
:func:`load_prices`, else the ``MNP_EC2_PRICES`` environment variable, else the bundled
file. A replacement is used as it is, never merged with the bundled prices, so every price
in use comes from one stated source. The file::

    {"source": "...", "region": "us-east-1", "currency": "USD", "unit": "hour",
     "asOf": "2026-12-01", "prices": {"c5.large": 0.085, ...}}
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mnp.errors import FieldError, InvalidInput

ENV_VAR = "MNP_EC2_PRICES"
BUNDLED = "prices.json"
_TYPE_NAME = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class PriceTable:
    """On-Demand USD per hour by instance type, for one region; read-only."""

    source: str
    region: str
    as_of: str
    prices: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, instance_type: str) -> float | None:
        return self.prices.get(instance_type)


def load_prices(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> PriceTable:
    """The table at ``path``, else at ``$MNP_EC2_PRICES``, else the bundled one.

    Raises :class:`~mnp.errors.InvalidInput` naming the file and each bad field
    (``prices["c5.large"]: must be a number > 0 (USD per hour), got "cheap"``); OSError when
    the file cannot be read."""
    environ = os.environ if env is None else env
    chosen = path if path is not None else environ.get(ENV_VAR) or None
    if chosen is None:
        text = resources.files(__package__).joinpath(BUNDLED).read_text(encoding="utf-8")
        where = f"{__package__}/{BUNDLED}"
    else:
        where = str(chosen)
        text = Path(chosen).read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput([FieldError(where, f"not JSON: {e}")]) from None
    return parse_prices(doc, where)


def parse_prices(doc: Any, where: str = "prices file") -> PriceTable:
    """A :class:`PriceTable` from the decoded file ``doc``; every problem is reported at
    once, each path starting with ``where`` (the file)."""
    errors: list[FieldError] = []

    def fail(key: str, message: str) -> None:
        errors.append(FieldError(f"{where}: {key}", message))

    if not isinstance(doc, dict):
        raise InvalidInput([FieldError(where, "must be a JSON object")])
    for key in ("source", "region"):
        value = doc.get(key)
        if not isinstance(value, str) or not value.strip():
            fail(key, "required: a non-empty string")
    if doc.get("currency", "USD") != "USD":
        fail("currency", f'must be "USD", got {doc.get("currency")!r}')
    if doc.get("unit", "hour") != "hour":
        fail("unit", f'must be "hour", got {doc.get("unit")!r}')
    as_of = doc.get("asOf")
    if not isinstance(as_of, str) or not _DATE.fullmatch(as_of):
        fail("asOf", "required: the date the prices hold for, YYYY-MM-DD")
    table = doc.get("prices")
    prices: dict[str, float] = {}
    if not isinstance(table, dict) or not table:
        fail("prices", "required: an object of instance type -> USD per hour")
    else:
        for name, value in table.items():
            key = f"prices[{json.dumps(name)}]"
            if not _TYPE_NAME.fullmatch(name):
                fail(key, "must be an instance type name such as c5.large")
            elif (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                fail(key, f"must be a number > 0 (USD per hour), got {json.dumps(value)}")
            else:
                prices[name] = float(value)
    if errors:
        raise InvalidInput(errors)
    return PriceTable(
        source=doc["source"],
        region=doc["region"],
        as_of=str(as_of),
        prices=MappingProxyType(prices),
    )
