"""Multi-node parallel (MNP) job shapes: node ranges, per-node containers, overrides.

Pure functions over plain data, shared by validation (edge) and the service (submit).
AWS Batch's rules: ``targetNodes`` is ``"a:b"`` (inclusive), ``":b"`` (from 0), ``"a:"`` (to the
last node) or ``"a"``; the ranges together must cover every node; where ranges overlap the
narrower one wins; ``nodeOverrides.numNodes`` needs an open-ended range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnp.errors import FieldError
from mnp.spec.resources import ContainerSpec, resources_from_wire

MPI_CHOICES = ("none", "auto", "openmpi", "mpich", "intelmpi")
MAX_RANGES = 5
MAX_NODES = 1000


@dataclass(frozen=True, slots=True)
class Range:
    start: int
    end: int | None
    """Inclusive; None means "to the last node"."""
    text: str

    def last(self, num_nodes: int) -> int:
        return num_nodes - 1 if self.end is None else self.end

    def covers(self, index: int, num_nodes: int) -> bool:
        return self.start <= index <= self.last(num_nodes)

    def span(self, num_nodes: int) -> int:
        return self.last(num_nodes) - self.start + 1


def parse_range(text: str) -> Range:
    """``"0:3"``, ``":3"``, ``"2:"``, ``"4"`` → :class:`Range`; ValueError names the rule."""
    t = text.strip()
    if ":" not in t:
        if not t.isdigit():
            raise ValueError(f"targetNodes {text!r} must look like 0:3, :3, 2: or 4")
        return Range(int(t), int(t), text)
    a, _, b = t.partition(":")
    if (a and not a.isdigit()) or (b and not b.isdigit()):
        raise ValueError(f"targetNodes {text!r} must look like 0:3, :3, 2: or 4")
    start = int(a) if a else 0
    end = int(b) if b else None
    if end is not None and end < start:
        raise ValueError(f"targetNodes {text!r} ends before it starts")
    return Range(start, end, text)


@dataclass(slots=True)
class NodeSpec:
    """The resolved nodes of one MNP job."""

    num_nodes: int
    main_node: int
    containers: list[ContainerSpec]
    """Per node index. An empty command means the node runs nothing itself (it serves SSH
    for the main node's ``mpirun``)."""
    mpi: str = "none"
    """How the main node's command starts: ``none`` (as given, once every node is ready) or an
    MPI flavour (``auto`` detects it) for which mnp builds the ``mpiexec`` command."""
    tasks_per_node: int | None = None
    """MPI slots per node; None means the node's vCPUs."""
    ready_timeout_seconds: float = 60.0
    ranges: list[dict[str, Any]] = field(default_factory=list)
    """``nodeRangeProperties`` as resolved (echoed by describe)."""

    def to_doc(self) -> dict[str, Any]:
        return {
            "num_nodes": self.num_nodes,
            "main_node": self.main_node,
            "containers": [c.to_wire() for c in self.containers],
            "mpi": self.mpi,
            "tasks_per_node": self.tasks_per_node,
            "ready_timeout_seconds": self.ready_timeout_seconds,
            "ranges": self.ranges,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> NodeSpec:
        return cls(
            num_nodes=d["num_nodes"],
            main_node=d["main_node"],
            containers=[ContainerSpec.from_wire(c) for c in d["containers"]],
            mpi=d.get("mpi", "none"),
            tasks_per_node=d.get("tasks_per_node"),
            ready_timeout_seconds=d.get("ready_timeout_seconds", 60.0),
            ranges=d.get("ranges", []),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "numNodes": self.num_nodes,
            "mainNode": self.main_node,
            "nodeRangeProperties": self.ranges,
        }


def check_node_properties(props: dict[str, Any], path: str = "nodeProperties") -> list[FieldError]:
    """Every problem with a definition's ``nodeProperties`` (after schema validation)."""
    errors: list[FieldError] = []
    num = props.get("numNodes")
    main = props.get("mainNode")
    ranges_doc = props.get("nodeRangeProperties") or []
    if not isinstance(num, int) or not 1 <= num <= MAX_NODES:
        errors.append(FieldError(f"{path}.numNodes", f"must be between 1 and {MAX_NODES}"))
        return errors
    if not isinstance(main, int) or not 0 <= main < num:
        errors.append(
            FieldError(f"{path}.mainNode", f"must be between 0 and numNodes-1 ({num - 1})")
        )
    if not ranges_doc:
        errors.append(FieldError(f"{path}.nodeRangeProperties", "at least one range is required"))
    if len(ranges_doc) > MAX_RANGES:
        errors.append(
            FieldError(
                f"{path}.nodeRangeProperties", f"at most {MAX_RANGES} ranges, got {len(ranges_doc)}"
            )
        )
    ranges: list[Range] = []
    for i, r in enumerate(ranges_doc):
        try:
            rng = parse_range(str(r.get("targetNodes", "")))
        except ValueError as e:
            errors.append(FieldError(f"{path}.nodeRangeProperties[{i}].targetNodes", str(e)))
            continue
        if rng.start >= num or (rng.end is not None and rng.end >= num):
            errors.append(
                FieldError(
                    f"{path}.nodeRangeProperties[{i}].targetNodes",
                    f"{rng.text!r} reaches past the last node ({num - 1})",
                )
            )
        ranges.append(rng)
    if len(ranges) == len(ranges_doc) and ranges:
        uncovered = [n for n in range(num) if not any(r.covers(n, num) for r in ranges)]
        if uncovered:
            errors.append(
                FieldError(
                    f"{path}.nodeRangeProperties",
                    f"nodes {_compact(uncovered)} are not covered by any targetNodes",
                )
            )
    mnp_block = props.get("mnp") or {}
    if mnp_block.get("mpi", "none") not in MPI_CHOICES:
        errors.append(FieldError(f"{path}.mnp.mpi", f"must be one of {', '.join(MPI_CHOICES)}"))
    return errors


def _winner(ranges: list[Range], index: int, num: int) -> int:
    """The range that decides node ``index``: the narrowest covering one (later wins ties)."""
    best = -1
    for i, r in enumerate(ranges):
        if r.covers(index, num) and (best < 0 or r.span(num) <= ranges[best].span(num)):
            best = i
    return best


def resolve_nodes(
    props: dict[str, Any],
    overrides: dict[str, Any] | None,
    base: ContainerSpec | None = None,
    has_script: bool = False,
) -> tuple[NodeSpec | None, list[FieldError]]:
    """The per-node containers of a definition's ``nodeProperties`` with submit-time
    ``nodeOverrides`` applied; errors name the override field that broke a rule. The main
    node needs something to run: a command, an image (its CMD) or the job's batch script."""
    main = int(props["mainNode"])
    ranges_doc = list(props["nodeRangeProperties"])
    ranges = [parse_range(str(r["targetNodes"])) for r in ranges_doc]
    overrides = overrides or {}
    num, errors = _num_nodes(int(props["numNodes"]), main, ranges, overrides.get("numNodes"))
    if errors:
        return None, errors
    containers: list[ContainerSpec] = []
    for n in range(num):
        w = _winner(ranges, n, num)
        if w < 0:
            errors.append(FieldError("nodeOverrides.numNodes", f"node {n} would not be covered"))
            continue
        doc = dict(ranges_doc[w].get("container") or {})
        containers.append(ContainerSpec.from_wire(doc))
    errors += _apply_overrides(containers, num, overrides.get("nodePropertyOverrides") or [])
    if (
        not errors
        and 0 <= main < len(containers)
        and not (containers[main].command or containers[main].image or has_script)
    ):
        errors.append(
            FieldError(
                "nodeOverrides.nodePropertyOverrides",
                f"the main node ({main}) needs a command (or an image)",
            )
        )
    mnp_block = props.get("mnp") or {}
    spec = NodeSpec(
        num_nodes=num,
        main_node=main,
        containers=containers,
        mpi=str(mnp_block.get("mpi", "none")),
        tasks_per_node=mnp_block.get("tasksPerNode"),
        ready_timeout_seconds=float(mnp_block.get("readyTimeoutSeconds", 60.0)),
        ranges=ranges_doc,
    )
    return spec, errors


def _num_nodes(
    num: int, main: int, ranges: list[Range], wanted_value: Any
) -> tuple[int, list[FieldError]]:
    """The job's node count: the definition's, or ``nodeOverrides.numNodes`` where an
    open-ended range lets it change (and it leaves the main node and every range a node)."""
    if wanted_value is None:
        return num, []
    wanted = int(wanted_value)
    open_ended = [r for r in ranges if r.end is None]
    if not open_ended:
        why = "needs a job definition range that is open-ended (like 2:)"
    elif not 1 <= wanted <= MAX_NODES:
        why = f"must be between 1 and {MAX_NODES}"
    elif any(r.start >= wanted for r in open_ended) or main >= wanted:
        why = f"{wanted} leaves the main node or an open range without nodes"
    else:
        return wanted, []
    return num, [FieldError("nodeOverrides.numNodes", why)]


def _apply_overrides(
    containers: list[ContainerSpec], num: int, overrides: list[dict[str, Any]]
) -> list[FieldError]:
    """Apply ``nodePropertyOverrides`` in order (command, environment, resources) to the
    containers of the nodes each one targets; a bad ``targetNodes`` is reported and skipped."""
    errors: list[FieldError] = []
    for i, o in enumerate(overrides):
        try:
            rng = parse_range(str(o.get("targetNodes", "")))
        except ValueError as e:
            errors.append(
                FieldError(f"nodeOverrides.nodePropertyOverrides[{i}].targetNodes", str(e))
            )
            continue
        co = o.get("containerOverrides") or {}
        for n in range(num):
            if not rng.covers(n, num) or n >= len(containers):
                continue
            c = containers[n]
            if co.get("command") is not None:
                c.command = [str(x) for x in co["command"]]
            for kv in co.get("environment") or []:
                c.environment[str(kv["name"])] = str(kv.get("value", ""))
            c.resources = resources_from_wire(co, base=c.resources)
    return errors


def _compact(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    parts: list[str] = []
    start = prev = indices[0]
    for n in [*indices[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev > start else str(start))
        if n is not None:
            start = prev = n
    return ",".join(parts)
