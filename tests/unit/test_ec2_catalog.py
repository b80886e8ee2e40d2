"""The instance-type catalogue: building it, expanding ``instanceTypes``, AWS's unknown-type
message; and the bundled price table and its loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mnp.ec2.catalog import UNKNOWN_TYPE_PREFIX, Catalogue, InstanceType, catalogue_from_ec2
from mnp.ec2.prices import ENV_VAR, load_prices, parse_prices
from mnp.errors import InvalidInput

ROWS: list[dict[str, Any]] = [
    {"name": "c5.large", "vcpus": 2, "memoryMiB": 4096},
    {"name": "c5.xlarge", "vcpus": 4, "memoryMiB": 8192},
    {"name": "c5.metal", "vcpus": 96, "memoryMiB": 196608},
    {"name": "c6i.large", "vcpus": 2, "memoryMiB": 4096},
    {"name": "m6i.large", "vcpus": 2, "memoryMiB": 8192},
    {"name": "m6i.metal", "vcpus": 128, "memoryMiB": 524288},
    {"name": "c4.large", "vcpus": 2, "memoryMiB": 3840},
    {"name": "m6g.large", "vcpus": 2, "memoryMiB": 8192, "architecture": "arm64"},
    {"name": "c7g.large", "vcpus": 2, "memoryMiB": 4096, "architecture": "arm64"},
    {"name": "g4dn.xlarge", "vcpus": 4, "memoryMiB": 16384, "gpus": 1},
]


@pytest.fixture
def cat() -> Catalogue:
    return Catalogue.from_rows(ROWS)


def names(types: list[InstanceType]) -> list[str]:
    return [t.name for t in types]


def test_rows_give_types_with_family_and_gpus(cat: Catalogue) -> None:
    g = cat["g4dn.xlarge"]
    assert (g.vcpus, g.memory_mib, g.gpus, g.architecture, g.family) == (
        4,
        16384,
        1,
        "x86_64",
        "g4dn",
    )
    assert cat["m6g.large"].architecture == "arm64"
    assert len(cat) == len(ROWS) and "c5.large" in cat


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["c5.xlarge"], ["c5.xlarge"]),
        (["c5"], ["c5.large", "c5.xlarge"]),  # the family, without c5.metal
        (["c5.metal"], ["c5.metal"]),  # a metal size named exactly
        (["c5", "c5.large"], ["c5.large", "c5.xlarge"]),  # each type once
        (["optimal"], ["m6i.large", "c6i.large"]),  # = default_x86_64; c4 not in it
        (["default_x86_64"], ["m6i.large", "c6i.large"]),
        (["default_arm64"], ["m6g.large", "c7g.large"]),
        (["g4dn"], ["g4dn.xlarge"]),
    ],
)
def test_expand(cat: Catalogue, entries: list[str], expected: list[str]) -> None:
    assert names(cat.expand(entries)) == expected


def test_unknown_entry_gives_aws_message_listing_valid_names(cat: Catalogue) -> None:
    with pytest.raises(InvalidInput) as err:
        cat.expand(["c5", "p3.2xlarge", "C5"])
    [e] = err.value.errors
    assert e.path == "instanceTypes"
    assert e.message.startswith(UNKNOWN_TYPE_PREFIX) and e.message.endswith("]")
    assert e.message == (
        "Instance type can only be one of [c4, c4.large, c5, c5.large, c5.metal, c5.xlarge, "
        "c6i, c6i.large, c7g, c7g.large, default_arm64, default_x86_64, g4dn, g4dn.xlarge, "
        "m6g, m6g.large, m6i, m6i.large, m6i.metal, optimal]"
    )


def test_mixed_architectures_refused(cat: Catalogue) -> None:
    [e] = cat.check(["c5.large", "m6g"], "computeResources.instanceTypes")
    assert e.path == "computeResources.instanceTypes"
    assert e.message == (
        "instance types must share one architecture: arm64 (m6g.large), x86_64 (c5.large)"
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"vcpus": 2, "memoryMiB": 1}, "row 0: name is required"),
        ({"name": "c5", "vcpus": 2, "memoryMiB": 1}, "name must look like family.size"),
        ({"name": "c5.large", "vcpus": "2", "memoryMiB": 1}, "vcpus must be an integer"),
        ({"name": "c5.large", "vcpus": 2, "memoryMiB": 1, "gpus": -1}, "gpus must be"),
    ],
)
def test_bad_rows_named(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Catalogue.from_rows([row])


class _Pages:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_paginator(self, name: str) -> _Pages:
        self.calls.append((name, {}))
        return self

    def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(("paginate", kwargs))
        return self.pages


def _item(name: str, vcpus: int, mib: int, arch: list[str], gpus: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = {
        "InstanceType": name,
        "VCpuInfo": {"DefaultVCpus": vcpus},
        "MemoryInfo": {"SizeInMiB": mib},
        "ProcessorInfo": {"SupportedArchitectures": arch},
    }
    if gpus:
        item["GpuInfo"] = {"Gpus": [{"Count": gpus, "Name": "T4"}]}
    return item


def test_describe_pages_all_read() -> None:
    client = _Pages(
        [
            {"InstanceTypes": [_item("c5.large", 2, 4096, ["x86_64"])], "NextToken": "t"},
            {
                "InstanceTypes": [
                    _item("m6g.large", 2, 8192, ["arm64"]),
                    _item("t2.micro", 1, 1024, ["i386", "x86_64"]),
                    _item("p3.8xlarge", 32, 249856, ["x86_64"], gpus=4),
                ]
            },
        ]
    )
    cat = catalogue_from_ec2(client)
    assert client.calls[0] == ("describe_instance_types", {})
    assert sorted(t.name for t in cat) == ["c5.large", "m6g.large", "p3.8xlarge", "t2.micro"]
    assert cat["t2.micro"].architecture == "x86_64"
    assert cat["p3.8xlarge"].gpus == 4
    assert cat["m6g.large"].architecture == "arm64"


# --- prices -------------------------------------------------------------------------------


def test_bundled_prices_name_their_source_and_cover_common_types() -> None:
    table = load_prices(env={})
    assert "entered by hand" in table.source and table.region == "us-east-1"
    for family in ("c5", "m5", "r5", "c6i", "m6i"):
        for size in ("large", "xlarge", "2xlarge", "4xlarge", "12xlarge", "24xlarge"):
            assert table.get(f"{family}.{size}"), f"{family}.{size}"
    for name in ("p3.2xlarge", "g4dn.xlarge", "t3.large", "t3.2xlarge"):
        assert table.get(name), name
    assert table.get("c5.large") == pytest.approx(0.085)


def _price_doc(**prices: Any) -> dict[str, Any]:
    return {"source": "mine", "region": "eu-west-1", "asOf": "2026-01-02", "prices": prices}


def test_override_by_argument_and_environment(tmp_path: Path) -> None:
    mine = tmp_path / "my prices.json"
    mine.write_text(json.dumps(_price_doc(**{"c5.large": 1.5})))
    by_arg = load_prices(mine, env={})
    by_env = load_prices(env={ENV_VAR: str(mine)})
    for table in (by_arg, by_env):
        assert table.source == "mine" and dict(table.prices) == {"c5.large": 1.5}


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        ({**_price_doc(**{"c5.large": "cheap"})}, 'prices["c5.large"]', "must be a number > 0"),
        ({**_price_doc(**{"c5.large": 0})}, 'prices["c5.large"]', "must be a number > 0"),
        ({**_price_doc(**{"c5.large": True})}, 'prices["c5.large"]', "must be a number > 0"),
        ({**_price_doc(**{"C5 large": 1})}, 'prices["C5 large"]', "must be an instance type"),
        ({**_price_doc(**{"c5.large": 1}), "source": ""}, "source", "required"),
        ({**_price_doc(**{"c5.large": 1}), "asOf": "today"}, "asOf", "YYYY-MM-DD"),
        ({**_price_doc(**{"c5.large": 1}), "currency": "EUR"}, "currency", 'must be "USD"'),
        (_price_doc(), "prices", "required"),
    ],
)
def test_bad_price_file_names_the_field(doc: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_prices(doc, "p.json")
    [e] = err.value.errors
    assert e.path == f"p.json: {path}" and message in e.message


def test_price_file_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text("{nope")
    with pytest.raises(InvalidInput, match="not JSON"):
        load_prices(bad)
