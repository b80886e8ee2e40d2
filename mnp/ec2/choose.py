"""Which EC2 instances to launch for the RUNNABLE jobs of one compute environment: pure.

:func:`choose` takes the demand (what each job needs per node; a multi-node job is a gang of
``nodes`` whole instances), the catalogue, the environment's ``instanceTypes``,
``allocationStrategy``, ``maxvCpus`` and the vCPUs already running, and returns the
instances to launch and, for each job that gets none, why it waits. No I/O, no clock.

Each rule and the AWS Batch sentence it follows (ComputeResource API reference and the
"Instance type allocation strategies" page):

* BEST_FIT — "Batch selects an instance type that best fits the needs of the jobs with a
  preference for the lowest-cost instance type." Per job, the candidate types that fit it
  are ranked by hourly price; the first is the only one used. "If additional instances of
  the selected instance type aren't available, Batch waits for the additional instances to
  be available": when that type is in ``unavailable`` the job waits, no other type is
  tried. It never goes over ``maxvCpus`` (the exception below names every other case).
* BEST_FIT_PROGRESSIVE — "Batch selects additional instance types that are large enough to
  meet the requirements of the jobs in the queue. Its preference is for instance types with
  lower cost vCPUs. If additional instances of the previously selected instance types aren't
  available, Batch selects new instance types." Ranked by price per vCPU the job can use
  (the price over how many such jobs fit on one instance: a 64-vCPU type with one GPU is not
  cheap per vCPU for one-GPU jobs), then price; the first type not in ``unavailable`` is used.
* SPOT_CAPACITY_OPTIMIZED — "Batch selects one or more instance types that are large enough
  ... Its preference is for instance types that are less likely to be interrupted." mnp has
  no interruption rates: the types in ``unavailable`` count as the ones short of Spot
  capacity and are skipped; the rest are ranked by closest fit (fewest vCPUs, then least
  memory), then Spot price.
* SPOT_PRICE_CAPACITY_OPTIMIZED — "looks at both price and capacity to select the Spot
  Instance pools that are the least likely to be interrupted and have the lowest possible
  price": types in ``unavailable`` skipped, the rest ranked by Spot price per usable vCPU
  as for BEST_FIT_PROGRESSIVE.
  The two SPOT_* strategies are refused unless ``spot``: "This allocation strategy is only
  available for Spot Instance compute resources."
* maxvCpus — "With BEST_FIT_PROGRESSIVE, SPOT_CAPACITY_OPTIMIZED and
  SPOT_PRICE_CAPACITY_OPTIMIZED ... strategies using On-Demand or Spot Instances, and the
  BEST_FIT strategy using Spot Instances, Batch might need to exceed maxvCpus ... Batch never
  exceeds maxvCpus by more than a single instance." In those cases an instance may be opened
  while the vCPUs running plus launched are still below ``maxvCpus`` (so only the last one
  crosses it); a gang of N may be opened when all but its last node fit under it. BEST_FIT
  On-Demand opens nothing that would take the total over ``maxvCpus``.
* bidPercentage — "The maximum percentage that a Spot Instance price can be when compared
  with the On-Demand price for that instance type ... You always pay the lowest (market)
  price and never more than your maximum percentage. If you leave this field empty, the
  default value is 100%". A type whose Spot price is above that share of its On-Demand price
  is not a candidate. Without ``spot_prices`` at all, the On-Demand price stands in for the
  Spot price (ranking only; no cap can be checked); with them, a type that has no Spot price,
  or no On-Demand price to cap it against, is not a candidate.
* Gangs — a multi-node parallel job needs ``nodes`` instances of one type, launched
  together or not at all (mnp starts the job only once every node is up). "Multi-node
  parallel jobs aren't supported on Spot Instances": with ``spot`` a gang waits.

Packing is first-fit decreasing: gangs first, then single-node jobs, each group largest
first (GPUs, vCPUs, memory; ties keep the demand's order). A gang's instances are its own. A
single job goes on the first instance opened in this decision that still has room for its
vCPUs, memory and GPUs; only when none has room is a new instance of its ranked type opened.
Prices are linear in size within a family, so opening the smallest fitting type and filling
it costs about what one large instance would, and releases capacity sooner when jobs end.
Types without a price rank after every priced one (then by size).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mnp.ec2.catalog import Catalogue, InstanceType
from mnp.ec2.prices import PriceTable


class Strategy(StrEnum):
    BEST_FIT = "BEST_FIT"
    BEST_FIT_PROGRESSIVE = "BEST_FIT_PROGRESSIVE"
    SPOT_CAPACITY_OPTIMIZED = "SPOT_CAPACITY_OPTIMIZED"
    SPOT_PRICE_CAPACITY_OPTIMIZED = "SPOT_PRICE_CAPACITY_OPTIMIZED"


SPOT_ONLY = frozenset({Strategy.SPOT_CAPACITY_OPTIMIZED, Strategy.SPOT_PRICE_CAPACITY_OPTIMIZED})


@dataclass(frozen=True, slots=True)
class Need:
    """What one RUNNABLE job needs on each of its nodes; ``nodes`` > 1 is a multi-node gang
    of whole instances. ``instance_type`` pins the type (a node range's ``instanceTypes``)."""

    key: str
    vcpus: float
    memory_mib: int
    gpus: int = 0
    nodes: int = 1
    instance_type: str | None = None

    def __post_init__(self) -> None:
        if not self.vcpus > 0 or self.memory_mib < 0 or self.gpus < 0 or self.nodes < 1:
            raise ValueError(f"{self.key}: needs vcpus > 0, memory_mib >= 0, gpus >= 0, nodes >= 1")


@dataclass(frozen=True, slots=True)
class Launch:
    instance_type: str
    count: int


@dataclass(frozen=True, slots=True)
class Waiting:
    """A job no instance is launched for this time, and why."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    launches: tuple[Launch, ...]
    """By instance type name; each type once."""
    waiting: tuple[Waiting, ...]
    """In the demand's order."""
    vcpus: int
    """The vCPUs the launches add."""

    def pairs(self) -> list[tuple[str, int]]:
        return [(launch.instance_type, launch.count) for launch in self.launches]


@dataclass(frozen=True, slots=True)
class _Candidate:
    itype: InstanceType
    cost: float | None
    """USD per hour: the Spot price when known and ``spot``, else On-Demand; None: unknown."""


class _Instance:
    """One instance this decision opens, with the room left on it."""

    __slots__ = ("gpus", "memory", "name", "vcpus")

    def __init__(self, itype: InstanceType) -> None:
        self.name = itype.name
        self.vcpus: float = itype.vcpus
        self.memory = itype.memory_mib
        self.gpus = itype.gpus

    def take(self, need: Need) -> bool:
        if need.vcpus <= self.vcpus and need.memory_mib <= self.memory and need.gpus <= self.gpus:
            self.vcpus -= need.vcpus
            self.memory -= need.memory_mib
            self.gpus -= need.gpus
            return True
        return False


def choose(
    demand: Sequence[Need],
    catalogue: Catalogue,
    allowed: Iterable[str],
    strategy: Strategy | str,
    max_vcpus: int,
    running_vcpus: int,
    *,
    prices: Mapping[str, float] | PriceTable,
    spot: bool | None = None,
    spot_prices: Mapping[str, float] | None = None,
    bid_percentage: int | None = None,
    unavailable: Collection[str] = frozenset(),
) -> Decision:
    """The instances to launch for ``demand`` under the rules in the module docstring.

    ``allowed`` is the environment's ``instanceTypes`` (expanded by the catalogue; an unknown
    entry raises :class:`~mnp.errors.InvalidInput`). ``spot`` says the environment is SPOT
    (default: only for the SPOT_* strategies). ``unavailable`` is the set of types currently
    short of capacity. The result never exceeds ``maxvCpus`` by more than the rules allow;
    every job of ``demand`` is either covered by a launch or listed in ``waiting``."""
    strategy = Strategy(strategy)
    spot = strategy in SPOT_ONLY if spot is None else spot
    table = prices.prices if isinstance(prices, PriceTable) else prices
    types = catalogue.expand(allowed)
    if strategy in SPOT_ONLY and not spot:
        why = f"{strategy.value} is only available for Spot Instance compute resources"
        return Decision((), tuple(Waiting(n.key, why) for n in demand), 0)
    pct = 100 if bid_percentage is None else bid_percentage
    candidates: list[_Candidate] = []
    priced_out = 0
    for t in types:
        od = table.get(t.name)
        if not spot or spot_prices is None:
            candidates.append(_Candidate(t, od))
        else:
            sp = spot_prices.get(t.name)
            if sp is not None and od is not None and sp <= od * pct / 100:
                candidates.append(_Candidate(t, sp))
            else:
                priced_out += 1
    overshoot = strategy != Strategy.BEST_FIT or spot
    ranked_cache: dict[tuple[float, int, int, int, str | None], list[_Candidate]] = {}

    def ranked(need: Need) -> list[_Candidate]:
        shape = (need.vcpus, need.memory_mib, need.gpus, min(need.nodes, 2), need.instance_type)
        got = ranked_cache.get(shape)
        if got is None:
            fits = [
                c
                for c in candidates
                if c.itype.vcpus >= need.vcpus
                and c.itype.memory_mib >= need.memory_mib
                and c.itype.gpus >= need.gpus
                and (need.instance_type is None or c.itype.name == need.instance_type)
            ]
            got = ranked_cache[shape] = sorted(fits, key=_rank_key(strategy, need))
        return got

    total = running_vcpus
    counts: dict[str, int] = {}
    added = 0
    open_: list[_Instance] = []
    waiting: dict[int, str] = {}

    def room(vcpus: int, k: int) -> bool:
        if overshoot:
            return total + (k - 1) * vcpus < max_vcpus
        return total + k * vcpus <= max_vcpus

    def pick(need: Need) -> _Candidate | str:
        """The type to open for ``need``, or why there is none."""
        fits = ranked(need)
        if not fits:
            return _no_fit(need, priced_out, pct)
        usable = [c for c in fits if c.itype.name not in unavailable]
        if strategy == Strategy.BEST_FIT:
            best = fits[0]
            if best.itype.name in unavailable:
                return f"BEST_FIT waits for {best.itype.name}, which is short of capacity"
            usable = [best]
        if not usable:
            return "every instance type that fits is short of capacity"
        for c in usable:
            if room(c.itype.vcpus, need.nodes):
                return c
        c = usable[0]
        return f"maxvCpus {max_vcpus} reached ({total} vCPUs running or launching)" + (
            f"; it needs {need.nodes} x {c.itype.name}" if need.nodes > 1 else ""
        )

    order = sorted(range(len(demand)), key=lambda i: _packing_key(demand[i]))
    for i in order:
        need = demand[i]
        if need.nodes > 1 and spot:
            waiting[i] = "multi-node parallel jobs aren't supported on Spot Instances"
            continue
        if need.nodes == 1 and _first_fit(open_, need):
            continue
        choice = pick(need)
        if isinstance(choice, str):
            waiting[i] = choice
            continue
        itype = choice.itype
        counts[itype.name] = counts.get(itype.name, 0) + need.nodes
        total += itype.vcpus * need.nodes
        added += itype.vcpus * need.nodes
        if need.nodes == 1:
            inst = _Instance(itype)
            inst.take(need)
            if inst.vcpus > 0:
                open_.append(inst)
    launches = tuple(Launch(name, counts[name]) for name in sorted(counts))
    left = tuple(Waiting(demand[i].key, waiting[i]) for i in sorted(waiting))
    return Decision(launches, left, added)


def _first_fit(open_: list[_Instance], need: Need) -> bool:
    """Put ``need`` on the first open instance with room; a full one leaves the list."""
    for k, inst in enumerate(open_):
        if inst.take(need):
            if inst.vcpus <= 0:
                del open_[k]
            return True
    return False


def _no_fit(need: Need, priced_out: int, pct: int) -> str:
    shape = f"{need.vcpus:g} vCPUs, {need.memory_mib} MiB, {need.gpus} GPUs"
    pinned = f" of type {need.instance_type}" if need.instance_type else ""
    why = f"no allowed instance type{pinned} fits {shape}"
    if priced_out:
        why += (
            f" ({priced_out} types left out: no Spot price known, or one above bidPercentage"
            f" {pct}% of On-Demand)"
        )
    return why


def _packing_key(need: Need) -> tuple[int, int, float, int]:
    return (0 if need.nodes > 1 else 1, -need.gpus, -need.vcpus, -need.memory_mib)


def _cost(c: _Candidate, need: Need) -> tuple[bool, float]:
    return (c.cost is None, c.cost or 0.0)


def _per_vcpu(c: _Candidate, need: Need) -> tuple[bool, float]:
    """Price per vCPU the job can use: the price over how many such jobs (or nodes) fit on
    one instance, so a type's spare vCPUs that memory or GPUs leave idle do not count."""
    return (c.cost is None, (c.cost or 0.0) / _slots(c.itype, need))


def _slots(t: InstanceType, need: Need) -> int:
    if need.nodes > 1:
        return 1
    n = int(t.vcpus // need.vcpus)
    if need.memory_mib:
        n = min(n, t.memory_mib // need.memory_mib)
    if need.gpus:
        n = min(n, t.gpus // need.gpus)
    return max(1, n)


def _size(c: _Candidate, need: Need) -> tuple[int, int]:
    return (c.itype.vcpus, c.itype.memory_mib)


_RANKINGS: Mapping[Strategy, tuple[Callable[[_Candidate, Need], tuple[object, ...]], ...]] = {
    Strategy.BEST_FIT: (_cost, _size),
    Strategy.BEST_FIT_PROGRESSIVE: (_per_vcpu, _cost, _size),
    Strategy.SPOT_CAPACITY_OPTIMIZED: (_size, _cost),
    Strategy.SPOT_PRICE_CAPACITY_OPTIMIZED: (_per_vcpu, _cost, _size),
}


def _rank_key(strategy: Strategy, need: Need) -> Callable[[_Candidate], tuple[object, ...]]:
    parts = _RANKINGS[strategy]

    def key(c: _Candidate) -> tuple[object, ...]:
        return (*(x for part in parts for x in part(c, need)), c.itype.name)

    return key
