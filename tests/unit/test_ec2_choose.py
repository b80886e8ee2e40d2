"""The instance chooser: demand × catalogue × strategy → instances to launch, as tables."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mnp.ec2.catalog import Catalogue
from mnp.ec2.choose import Decision, Need, Strategy, choose
from mnp.errors import InvalidInput

# name, vCPUs, MiB, GPUs, USD/hour (roughly us-east-1 list prices)
TYPES = [
    ("c5.large", 2, 4096, 0, 0.085),
    ("c5.xlarge", 4, 8192, 0, 0.17),
    ("c5.2xlarge", 8, 16384, 0, 0.34),
    ("c5.4xlarge", 16, 32768, 0, 0.68),
    ("m5.large", 2, 8192, 0, 0.096),
    ("m5.xlarge", 4, 16384, 0, 0.192),
    ("r5.large", 2, 16384, 0, 0.126),
    ("r5.xlarge", 4, 32768, 0, 0.252),
    ("g4dn.xlarge", 4, 16384, 1, 0.526),
    ("g4dn.12xlarge", 48, 196608, 4, 3.912),
    ("x9.large", 2, 4096, 0, None),  # in the catalogue, not in the price table
    ("g5.16xlarge", 64, 262144, 1, 4.096),  # cheap per vCPU, but one GPU
    ("z1.4xlarge", 16, 32768, 0, 0.40),  # made up: cheaper per vCPU than c5
]
CAT = Catalogue.from_rows(
    {"name": n, "vcpus": v, "memoryMiB": m, "gpus": g} for n, v, m, g, _ in TYPES
)
PRICES = {n: p for n, *_, p in TYPES if p is not None}
ALLOWED = ["c5", "m5", "r5", "g4dn"]
BF, BFP = Strategy.BEST_FIT, Strategy.BEST_FIT_PROGRESSIVE
SCO, SPCO = Strategy.SPOT_CAPACITY_OPTIMIZED, Strategy.SPOT_PRICE_CAPACITY_OPTIMIZED


def jobs(n: int, vcpus: float = 1, mib: int = 1024, gpus: int = 0, **kw: Any) -> list[Need]:
    return [Need(f"j{i}", vcpus, mib, gpus, **kw) for i in range(n)]


def run(
    demand: list[Need],
    strategy: Strategy = BF,
    max_vcpus: int = 1000,
    running: int = 0,
    allowed: list[str] | None = None,
    **kw: Any,
) -> Decision:
    return choose(
        demand,
        CAT,
        ALLOWED if allowed is None else allowed,
        strategy,
        max_vcpus,
        running,
        prices=PRICES,
        **kw,
    )


CASES: list[tuple[str, list[Need], dict[str, Any], list[tuple[str, int]], int]] = [
    # id, demand, choose() arguments, launches, how many jobs wait
    ("one small job: cheapest type", jobs(1), {}, [("c5.large", 1)], 0),
    ("three 1-vCPU jobs share two c5.large", jobs(3), {}, [("c5.large", 2)], 0),
    ("memory-bound: 12 GiB on r5.large", jobs(1, 1, 12288), {}, [("r5.large", 1)], 0),
    ("memory-bound: 20 GiB on r5.xlarge", jobs(1, 1, 20480), {}, [("r5.xlarge", 1)], 0),
    ("one GPU", jobs(1, 2, 8192, 1), {}, [("g4dn.xlarge", 1)], 0),
    ("two GPUs need the 4-GPU type", jobs(1, 2, 8192, 2), {}, [("g4dn.12xlarge", 1)], 0),
    ("each GPU job its cheapest GPU type", jobs(5, 1, 1024, 1), {}, [("g4dn.xlarge", 5)], 0),
    (
        "a CPU job fills a GPU instance's spare vCPUs",
        [*jobs(1, 1, 1024, 1), Need("cpu", 2, 1024)],
        {},
        [("g4dn.xlarge", 1)],
        0,
    ),
    ("too big for any type", jobs(1, 64), {}, [], 1),
    ("pinned type", jobs(1, 1, 1024, instance_type="m5.xlarge"), {}, [("m5.xlarge", 1)], 0),
    ("pinned type outside instanceTypes", jobs(1, instance_type="x9.large"), {}, [], 1),
    # maxvCpus: BEST_FIT On-Demand never exceeds it; the others by at most one instance
    (
        "BEST_FIT stops at maxvCpus",
        jobs(3, 2),
        {"max_vcpus": 5, "running": 2},
        [("c5.large", 1)],
        2,
    ),
    (
        "BEST_FIT exactly at maxvCpus",
        jobs(3, 2),
        {"max_vcpus": 6, "running": 2},
        [("c5.large", 2)],
        1,
    ),
    (
        "PROGRESSIVE one instance over",
        jobs(3, 2),
        {"strategy": BFP, "max_vcpus": 5, "running": 2},
        [("c5.large", 2)],
        1,
    ),
    (
        "BEST_FIT on Spot one instance over",
        jobs(3, 2),
        {"max_vcpus": 5, "running": 2, "spot": True},
        [("c5.large", 2)],
        1,
    ),
    (
        "SPOT_PRICE one instance over",
        jobs(3, 2),
        {"strategy": SPCO, "max_vcpus": 5, "running": 2},
        [("c5.large", 2)],
        1,
    ),
    ("already at maxvCpus", jobs(2), {"strategy": BFP, "max_vcpus": 4, "running": 4}, [], 2),
    ("maxvCpus 0", jobs(1), {"max_vcpus": 0}, [], 1),
    # short of capacity: BEST_FIT waits, the others take the next best type
    ("BEST_FIT waits for its type", jobs(1, 2, 2048), {"unavailable": {"c5.large"}}, [], 1),
    (
        "BEST_FIT: lowest-cost type",
        jobs(3),
        {"allowed": ["c5", "z1.4xlarge"]},
        [("c5.large", 2)],
        0,
    ),
    (
        "PROGRESSIVE: lower cost vCPUs",
        jobs(3),
        {"strategy": BFP, "allowed": ["c5", "z1.4xlarge"]},
        [("z1.4xlarge", 1)],
        0,
    ),
    (
        "PROGRESSIVE: per vCPU the job can use",
        jobs(2, 2, 8192, 1),
        {"strategy": BFP, "allowed": ["g4dn", "g5"]},
        [("g4dn.xlarge", 2)],
        0,
    ),
    (
        "PROGRESSIVE takes the next cheapest per vCPU",
        jobs(1, 2, 2048),
        {"strategy": BFP, "unavailable": {"c5.large"}},
        [("c5.xlarge", 1)],
        0,
    ),
    (
        "PROGRESSIVE: every fitting type short",
        jobs(1, 2, 8192, 1),
        {"strategy": BFP, "unavailable": {"g4dn.xlarge", "g4dn.12xlarge"}},
        [],
        1,
    ),
    ("SPOT_CAPACITY: closest fit", jobs(1, 2, 3072), {"strategy": SCO}, [("c5.large", 1)], 0),
    (
        "SPOT_CAPACITY: closest fit not short",
        jobs(1, 2, 3072),
        {"strategy": SCO, "unavailable": {"c5.large"}},
        [("m5.large", 1)],
        0,
    ),
    ("SPOT_* refused on EC2", jobs(2), {"strategy": SCO, "spot": False}, [], 2),
    # gangs: N whole instances of one type, together or not at all; never on Spot
    ("gang of 3", jobs(1, 4, 4096, nodes=3), {}, [("c5.xlarge", 3)], 0),
    (
        "gang instances are not shared",
        [*jobs(1, 3, 4096, nodes=2), Need("s", 1, 512)],
        {},
        [("c5.large", 1), ("c5.xlarge", 2)],
        0,
    ),
    ("gang over maxvCpus waits (BEST_FIT)", jobs(1, 4, 4096, nodes=3), {"max_vcpus": 10}, [], 1),
    (
        "gang: last node may cross (PROGRESSIVE)",
        jobs(1, 4, 4096, nodes=3),
        {"strategy": BFP, "max_vcpus": 10},
        [("c5.xlarge", 3)],
        0,
    ),
    (
        "gang: two nodes over waits (PROGRESSIVE)",
        jobs(1, 4, 4096, nodes=3),
        {"strategy": BFP, "max_vcpus": 8},
        [],
        1,
    ),
    ("gang on Spot waits", jobs(1, 2, 2048, nodes=2), {"strategy": SPCO}, [], 1),
    ("gang of GPU nodes", jobs(1, 2, 8192, 1, nodes=4), {}, [("g4dn.xlarge", 4)], 0),
    (
        "gang waits, singles still launch",
        [*jobs(1, 2, 2048, nodes=4), Need("s", 2, 2048)],
        {"max_vcpus": 6},
        [("c5.large", 1)],
        1,
    ),
    # types without a price rank after the priced ones
    (
        "unpriced type only when nothing priced fits",
        jobs(1, 2, 2048),
        {"allowed": ["x9.large", "c5.xlarge"]},
        [("c5.xlarge", 1)],
        0,
    ),
    (
        "unpriced type alone is used",
        jobs(1, 2, 2048),
        {"allowed": ["x9.large"]},
        [("x9.large", 1)],
        0,
    ),
]


@pytest.mark.parametrize(
    ("demand", "args", "launches", "waiting"),
    [pytest.param(d, a, lz, w, id=i) for i, d, a, lz, w in CASES],
)
def test_decisions(
    demand: list[Need], args: dict[str, Any], launches: list[tuple[str, int]], waiting: int
) -> None:
    decision = run(demand, **args)
    assert decision.pairs() == launches
    assert len(decision.waiting) == waiting, decision.waiting
    assert decision.vcpus == sum(CAT[n].vcpus * k for n, k in launches)


@pytest.mark.parametrize(
    ("demand", "args", "reason"),
    [
        (jobs(1, 64), {}, "no allowed instance type fits 64 vCPUs, 1024 MiB, 0 GPUs"),
        (jobs(2, 2), {"max_vcpus": 2}, "maxvCpus 2 reached (2 vCPUs running or launching)"),
        (jobs(1, 2), {"unavailable": {"c5.large"}}, "BEST_FIT waits for c5.large, which is short"),
        (
            jobs(1, 2, nodes=2),
            {"strategy": SCO},
            "multi-node parallel jobs aren't supported on Spot",
        ),
        (jobs(1), {"strategy": SPCO, "spot": False}, "only available for Spot Instance compute"),
        (jobs(1, 4, nodes=3), {"max_vcpus": 10}, "it needs 3 x c5.xlarge"),
    ],
)
def test_waiting_reasons(demand: list[Need], args: dict[str, Any], reason: str) -> None:
    decision = run(demand, **args)
    assert decision.waiting[-1].key == demand[-1].key
    assert reason in decision.waiting[-1].reason


def test_first_fit_decreasing_packs_large_jobs_first() -> None:
    # in arrival order the three 1-vCPU jobs would fill one c5.xlarge and each 3-vCPU job
    # need its own (4 instances); largest first, each 1-vCPU job fills a gap (3 instances)
    demand = [*jobs(3, 1, 512), *[Need(f"big{i}", 3, 512) for i in range(3)]]
    assert run(demand, allowed=["c5.xlarge"]).pairs() == [("c5.xlarge", 3)]


SPOT = {"c5.large": 0.030, "m5.large": 0.040, "r5.large": 0.060, "c5.xlarge": 0.050}


@pytest.mark.parametrize(
    ("strategy", "bid", "launches"),
    [
        # per vCPU c5.xlarge (0.0125) beats c5.large (0.015); both within 100%
        (SPCO, None, [("c5.xlarge", 1)]),
        (SPCO, 30, [("c5.xlarge", 1)]),  # c5.xlarge is at 29.4% of On-Demand
        (SPCO, 29, []),  # c5.xlarge 29.4%, c5.large 35.3%, m5.large 41.7%, r5.large 47.6%
        (SCO, 40, [("c5.large", 1)]),  # closest fit within 40%
        (SCO, 34, [("c5.xlarge", 1)]),  # c5.large (35%) priced out: next closest fit
        (BF, 45, [("c5.large", 1)]),  # BEST_FIT on Spot: lowest Spot price
    ],
)
def test_bid_percentage_caps_spot_price(
    strategy: Strategy, bid: int | None, launches: list[tuple[str, int]]
) -> None:
    decision = run(jobs(1, 2, 2048), strategy, spot=True, spot_prices=SPOT, bid_percentage=bid)
    assert decision.pairs() == launches
    if not launches:
        assert "or one above bidPercentage 29% of On-Demand" in decision.waiting[0].reason


def test_spot_without_spot_prices_ranks_by_on_demand() -> None:
    assert run(jobs(1, 2, 2048), SPCO, bid_percentage=10).pairs() == [("c5.large", 1)]


def test_unknown_instance_type_entry_raises_aws_error() -> None:
    with pytest.raises(InvalidInput, match=r"^instanceTypes: Instance type can only be one of \["):
        run(jobs(1), allowed=["c5", "p3"])


def test_accepts_strategy_by_name_and_a_price_table() -> None:
    from mnp.ec2.prices import load_prices

    table = load_prices(env={})
    d = choose(jobs(1), CAT, ["c5"], "BEST_FIT_PROGRESSIVE", 10, 0, prices=table)
    assert d.pairs() == [("c5.large", 1)]


@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("seed", range(5))
def test_max_vcpus_bound_and_every_job_accounted(strategy: Strategy, seed: int) -> None:
    rng = random.Random(seed)
    demand = [
        Need(
            f"j{i}",
            rng.choice([1, 2, 3, 4, 8]),
            rng.choice([512, 2048, 6000, 15000]),
            rng.choice([0, 0, 0, 1]),
            nodes=rng.choice([1, 1, 1, 2, 3]),
        )
        for i in range(60)
    ]
    max_vcpus, running = rng.choice([16, 40, 100]), rng.choice([0, 6])
    spot = strategy != Strategy.BEST_FIT or seed % 2 == 1
    d = run(demand, strategy, max_vcpus, running, spot=spot)
    biggest = max(CAT[name].vcpus for name, _ in d.pairs()) if d.launches else 0
    if strategy == Strategy.BEST_FIT and not spot:
        assert running + d.vcpus <= max_vcpus
    else:
        assert running + d.vcpus < max_vcpus + biggest or not d.launches
    # a job waits, or its nodes (gangs) / its share of an instance (singles) are launched
    launched_slots = sum(CAT[n].vcpus * k for n, k in d.pairs())
    placed = [n for n in demand if n.key not in {w.key for w in d.waiting}]
    assert sum(n.vcpus * n.nodes for n in placed) <= launched_slots
    if spot:
        assert all(n.nodes == 1 for n in placed)
