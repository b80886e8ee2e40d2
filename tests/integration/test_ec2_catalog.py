"""The catalogue from EC2's DescribeInstanceTypes, through boto3, against a real moto server;
and the chooser timed over that whole catalogue."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mnp.ec2.catalog import UNKNOWN_TYPE_PREFIX, Catalogue, catalogue_from_ec2
from mnp.ec2.choose import Need, Strategy, choose
from mnp.ec2.prices import load_prices
from mnp.errors import InvalidInput
from tests.integration.motoserver import MotoServer

pytestmark = pytest.mark.integration
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def catalogue(moto: MotoServer) -> Catalogue:
    ec2 = boto3.client("ec2", **moto.client_args())
    return catalogue_from_ec2(ec2)


def test_catalogue_from_describe_instance_types(catalogue: Catalogue) -> None:
    c5 = catalogue["c5.large"]
    assert (c5.vcpus, c5.memory_mib, c5.gpus, c5.architecture) == (2, 4096, 0, "x86_64")
    assert catalogue["g4dn.xlarge"].gpus == 1
    assert catalogue["m6g.large"].architecture == "arm64"
    assert "c5.metal" in catalogue and "c5.metal" not in {t.name for t in catalogue.family("c5")}
    assert len(catalogue) > 500


def test_unknown_type_gives_the_aws_error(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidInput) as err:
        catalogue.expand(["c5", "c5.huge"])
    [e] = err.value.errors
    assert e.message.startswith(UNKNOWN_TYPE_PREFIX + "a1, a1.2xlarge")
    assert ", c5.large, " in e.message and ", optimal, " in e.message


def test_choose_over_the_whole_catalogue_timed(catalogue: Catalogue) -> None:
    allowed = [t.name for t in catalogue if t.architecture == "x86_64"]
    shapes = [(1, 2048, 0), (2, 4096, 0), (4, 30000, 0), (8, 16384, 0), (4, 16384, 1)]
    demand = [Need(f"j{i}", *shapes[i % len(shapes)]) for i in range(990)]
    demand += [Need(f"g{i}", 16, 65536, nodes=4) for i in range(10)]
    prices = load_prices(env={})
    for strategy in (Strategy.BEST_FIT, Strategy.BEST_FIT_PROGRESSIVE):
        started = time.perf_counter()
        d = choose(demand, catalogue, allowed, strategy, 100_000, 0, prices=prices)
        took = time.perf_counter() - started
        print(
            f"\n{strategy.value}: {len(demand)} jobs over {len(allowed)} types in {took:.3f}s: "
            f"{sum(n for _, n in d.pairs())} instances of {len(d.launches)} types, "
            f"{d.vcpus} vCPUs, {len(d.waiting)} waiting"
        )
        assert not d.waiting
