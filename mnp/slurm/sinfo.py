"""``sinfo``: partitions (job queues) and their nodes, in Slurm's columns.

Pure functions, no I/O. A partition is a job queue; its nodes are the nodes of the compute
environments the queue draws on. As Slurm does, one line per partition and node state
(``batch* up infinite 2 idle node[1-2]``), the default partition marked ``*``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mnp.slurm.hostlist import compress
from mnp.slurm.scontrol import SHORT_NODE_STATES, node_state

JSON = dict[str, Any]
SINFO_DEFAULT = "%#P %.5a %.10l %.6D %.6t %N"
"""Slurm's default format; ``%#P`` is as wide as the longest partition name."""
SINFO_NODE_DEFAULT = "%#N %.6D %.9P %6t"
"""``sinfo -N``'s: one line per node and partition."""


@dataclass(frozen=True, slots=True)
class SinfoRow:
    """One line of sinfo: a partition's nodes in one state."""

    partition: str
    default: bool
    avail: str
    state: str
    """Slurm's long node state (``IDLE``, ``MIXED``, ``ALLOCATED``, ``DOWN``)."""
    nodes: tuple[str, ...]
    cpus: int
    memory_mib: int
    gpus: int
    cpus_alloc: int = 0
    """CPUs the running jobs hold on these nodes (sinfo's ``%C`` A)."""
    cpus_total: int = 0
    """All these nodes' CPUs (``%C`` T)."""

    @property
    def shown_partition(self) -> str:
        return self.partition + ("*" if self.default else "")


def queue_environments(queue: JSON) -> list[str]:
    """The compute environment names a JobQueueDetail draws on (ARNs end in the name)."""
    order = sorted(queue.get("computeEnvironmentOrder") or [], key=lambda e: e.get("order", 0))
    return [str(e.get("computeEnvironment", "")).rpartition("/")[2] for e in order]


def _avail(queue: JSON) -> str:
    """``up`` for an enabled, valid queue; ``drain`` for a disabled one (no new jobs, its
    running jobs go on, as a drained partition); ``down`` for an invalid one."""
    if queue.get("status") == "INVALID":
        return "down"
    return "up" if queue.get("state", "ENABLED") == "ENABLED" else "drain"


def sinfo_rows(queues: Sequence[JSON], nodes: Sequence[JSON], default: str,
               per_node: bool = False) -> list[SinfoRow]:  # fmt: skip
    """One row per queue and node state, states in Slurm's order; a queue without nodes
    gets one row of 0 nodes (state ``n/a``), as Slurm shows an empty partition. With
    ``per_node`` (``sinfo -N``) one row per queue and node, and no row for an empty queue."""
    order = ("ALLOCATED", "MIXED", "IDLE", "DOWN")
    rows: list[SinfoRow] = []
    for queue in queues:
        name = str(queue.get("jobQueueName", ""))
        envs = set(queue_environments(queue))
        mine = [n for n in nodes if n.get("computeEnvironment") in envs]
        by_state: dict[str, list[JSON]] = {}
        for node in mine:
            by_state.setdefault(node_state(node), []).append(node)
        if not by_state and not per_node:
            rows.append(SinfoRow(name, name == default, _avail(queue), "N/A", (), 0, 0, 0))
        for state in order:
            group = by_state.get(state) or []
            for part in [[n] for n in group] if per_node else [group] if group else []:
                rows.append(
                    SinfoRow(
                        name, name == default, _avail(queue), state,
                        tuple(str(n.get("nodeId", "")) for n in part),
                        min(int(n.get("vcpus") or 0) for n in part),
                        min(int(n.get("memoryMiB") or 0) for n in part),
                        min(int(n.get("gpus") or 0) for n in part),
                        sum(_cpus_alloc(n) for n in part),
                        sum(int(n.get("vcpus") or 0) for n in part),
                    )
                )  # fmt: skip
    return rows


def _cpus_alloc(node: JSON) -> int:
    total, free = int(node.get("vcpus") or 0), node.get("freeVcpus")
    if node_state(node) == "DOWN" or not isinstance(free, int):
        return 0
    return max(0, total - free)


def _short_state(row: SinfoRow) -> str:
    return SHORT_NODE_STATES.get(row.state, "n/a")


SINFO_FIELDS: dict[str, tuple[str, Callable[[SinfoRow], str]]] = {
    "P": ("PARTITION", lambda r: r.shown_partition),
    "R": ("PARTITION", lambda r: r.partition),
    "a": ("AVAIL", lambda r: r.avail),
    "l": ("TIMELIMIT", lambda r: "infinite"),
    "L": ("DEFAULTTIME", lambda r: "n/a"),
    "D": ("NODES", lambda r: str(len(r.nodes))),
    "t": ("STATE", _short_state),
    "T": ("STATE", lambda r: r.state.lower() if r.state != "N/A" else "n/a"),
    "N": ("NODELIST", lambda r: compress(r.nodes)),
    "n": ("HOSTNAMES", lambda r: compress(r.nodes)),
    "c": ("CPUS", lambda r: str(r.cpus)),
    "m": ("MEMORY", lambda r: str(r.memory_mib)),
    "G": ("GRES", lambda r: f"gpu:{r.gpus}" if r.gpus else "(null)"),
    "F": ("NODES(A/I/O/T)", lambda r: _aiot(r)),
    "C": ("CPUS(A/I/O/T)", lambda r: _cpus_aiot(r)),
}
"""Each field's header and value. Other Slurm fields print ``N/A`` with a warning."""


def _aiot(row: SinfoRow, per_node: int = 1) -> str:
    """Allocated/idle/other/total (whole nodes of this row's state)."""
    n = len(row.nodes) * per_node
    busy = n if row.state in ("ALLOCATED", "MIXED") else 0
    idle = n if row.state == "IDLE" else 0
    other = n if row.state == "DOWN" else 0
    return f"{busy}/{idle}/{other}/{n}"


def _cpus_aiot(row: SinfoRow) -> str:
    """Allocated/idle/other/total CPUs, counted per CPU as Slurm does (a node with one of
    two CPUs busy: ``1/1/0/2``); a down node's are all "other"."""
    total = row.cpus_total
    if row.state == "DOWN":
        return f"0/0/{total}/{total}"
    return f"{row.cpus_alloc}/{total - row.cpus_alloc}/0/{total}"


_SPEC = re.compile(r"%(#)?(\.)?(-)?(\d*)(.)")


@dataclass(frozen=True, slots=True)
class SinfoSpec:
    field: str
    width: int = 0
    right: bool = False
    literal: str = ""
    fit: bool = False
    """``%#X``: as wide as the widest value (Slurm's default format uses it for ``%P``)."""


def parse_sinfo_format(fmt: str) -> tuple[list[SinfoSpec], list[str]]:
    """The pieces of an sinfo ``-o`` format and the fields mnp does not have (shown as
    ``N/A``: the caller warns about them). ``%%`` is a literal ``%``; a ``%`` at the end is
    kept as text."""
    out: list[SinfoSpec] = []
    unknown: list[str] = []
    pos = 0
    while pos < len(fmt):
        cut = fmt.find("%", pos)
        if cut < 0:
            out.append(SinfoSpec("", literal=fmt[pos:]))
            break
        if cut > pos:
            out.append(SinfoSpec("", literal=fmt[pos:cut]))
        m = _SPEC.match(fmt, cut)
        if m is None:
            out.append(SinfoSpec("", literal=fmt[cut:]))
            break
        fit, dot, _, width, letter = m.groups()
        if letter == "%":
            out.append(SinfoSpec("", literal="%"))
        else:
            if letter not in SINFO_FIELDS:
                unknown.append(f"%{letter}")
            out.append(SinfoSpec(letter, int(width or 0), bool(dot), fit=bool(fit)))
        pos = m.end()
    return out, unknown


def render_sinfo(rows: Sequence[SinfoRow], fmt: str = SINFO_DEFAULT, header: bool = True) -> str:
    """sinfo's output for ``fmt``: the header (unless ``header`` is False), one line per
    row. A cell is cut to its width, as Slurm cuts it, except ``%#X`` ones."""
    specs, _ = parse_sinfo_format(fmt)

    def value(spec: SinfoSpec, row: SinfoRow) -> str:
        field = SINFO_FIELDS.get(spec.field)
        return field[1](row) if field else "N/A"

    def title(spec: SinfoSpec) -> str:
        field = SINFO_FIELDS.get(spec.field)
        return field[0] if field else spec.field.upper()

    values = [[value(s, r) if s.field else s.literal for s in specs] for r in rows]
    widths = []
    for i, s in enumerate(specs):
        width = s.width
        if s.fit:
            width = max([len(title(s)), *(len(v[i]) for v in values)])
        widths.append(width)

    def line(cells: Sequence[str]) -> str:
        out = []
        for s, w, c in zip(specs, widths, cells, strict=True):
            if not s.field or not w:
                out.append(c)
            else:
                c = c if s.fit else c[:w]
                out.append(c.rjust(w) if s.right else c.ljust(w))
        return "".join(out)

    lines = [line([title(s) if s.field else s.literal for s in specs])] if header else []
    lines += [line(v) for v in values]
    return "".join(f"{x}\n" for x in lines)
