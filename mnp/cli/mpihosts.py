"""How ``mnp mpirun``'s flags shape a job: ``-np``/``-N``/``--npernode``, and ``-H n1:4,n2:4``
/ ``--hostfile FILE``, MPI users' way of saying nodes × slots.

mnp places jobs itself, so host names are never pinned: a host list only gives the job's
shape. :func:`host_shape` turns hosts and ``-np`` into ``(nodes, tasks per node)`` plus the
notes the CLI prints. Everything is pure but :func:`read_hosts`, which reads the hostfile.

Accepted spellings (Open MPI and MPICH habits):

- ``-H``/``--host``: ``n1:4,n2:4``, ``n1,n1,n2`` (a repeated name adds a slot), repeatable;
- hostfile lines: ``n1 slots=4`` (Open MPI; ``max_slots=`` ignored), ``n1:4`` (MPICH), ``n1``
  (one slot; repeats add up), ``#`` comments and blank lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_SLOTS = re.compile(r"^slots=(\d+)$")
_MAX_SLOTS = re.compile(r"^max[-_]slots=(\d+)$")


class HostsError(ValueError):
    """A host list or hostfile that cannot be read; the message names the bad part."""


def _add(hosts: dict[str, int], name: str, slots: int, where: str) -> None:
    if not _NAME.match(name):
        raise HostsError(f"{where}: {name!r} is not a host name")
    if slots < 1:
        raise HostsError(f"{where}: {name} needs at least 1 slot")
    hosts[name] = hosts.get(name, 0) + slots


def _name_slots(item: str, where: str) -> tuple[str, int]:
    """``n1:4`` → (n1, 4); ``n1`` → (n1, 1)."""
    name, colon, count = item.partition(":")
    if colon and not count.isdigit():
        raise HostsError(f"{where}: {item!r}: slots after ':' must be a number")
    return name, int(count) if colon else 1


def parse_host_args(values: Iterable[str]) -> list[tuple[str, int]]:
    """``-H`` values → ``[(host, slots)]`` in first-seen order (repeats add up)."""
    hosts: dict[str, int] = {}
    for value in values:
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, slots = _name_slots(item, "-H")
            _add(hosts, name, slots, "-H")
    if not hosts:
        raise HostsError("-H: no host given")
    return list(hosts.items())


def parse_hostfile(text: str, source: str = "hostfile") -> list[tuple[str, int]]:
    """A hostfile's text → ``[(host, slots)]`` in first-seen order (repeats add up)."""
    hosts: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        first, *rest = line.split()
        name, slots = _name_slots(first, where)
        for word in rest:
            if m := _SLOTS.match(word):
                slots = int(m.group(1))
            elif not _MAX_SLOTS.match(word):
                raise HostsError(f"{where}: unknown {word!r} (expected slots=N)")
        _add(hosts, name, slots, where)
    if not hosts:
        raise HostsError(f"{source}: no host in it")
    return list(hosts.items())


@dataclass(frozen=True, slots=True)
class Shape:
    nodes: int
    tasks_per_node: int
    np: int
    notes: tuple[str, ...]


def host_shape(hosts: Sequence[tuple[str, int]], np: int | None) -> Shape:
    """How many nodes and tasks per node a host list asks for.

    Slots per node are the hosts' slots; when hosts differ, the largest (said in a note, since
    every mnp node of a job runs the same number of tasks). ``np`` defaults to the sum of the
    slots. A smaller ``np`` fills hosts in order, as mpirun does by slot, and then spreads
    evenly over the nodes it needs: ``-np 6 -H a:4,b:4`` → 2 nodes × 3, ``-np 4`` → 1 × 4.
    Raises HostsError when ``np`` is more than the slots (mpirun refuses that too).
    """
    slots = [s for _, s in hosts]
    total, per_host = sum(slots), max(slots)
    notes = []
    if len(set(slots)) > 1:
        notes.append(f"hosts have unequal slots ({', '.join(f'{h}:{s}' for h, s in hosts)}); "
                     "mnp runs as many tasks on every node")  # fmt: skip
    if np is None:
        np = total
    if np > total:
        raise HostsError(f"-np {np} is more than the {total} slots the hosts give")
    nodes = min(len(hosts), math.ceil(np / per_host))
    per_node = math.ceil(np / nodes)
    names = ", ".join(h for h, _ in hosts)
    notes.append(f"{nodes} node{'s' if nodes != 1 else ''} × {per_node} tasks from the hosts "
                 f"({names}); mnp chooses the nodes itself")  # fmt: skip
    return Shape(nodes, per_node, np, tuple(notes))


def read_hosts(hosts: Sequence[str], hostfile: Path | None) -> list[tuple[str, int]] | None:
    """The ``(host, slots)`` of ``-H`` values or of a hostfile; None when neither is given.
    Raises HostsError for both at once, an unreadable file, or bad contents."""
    if hosts and hostfile is not None:
        raise HostsError("give -H/--host or --hostfile, not both")
    if hostfile is not None:
        try:
            text = hostfile.read_text()
        except OSError as exc:
            raise HostsError(f"cannot read the hostfile {hostfile}: {exc.strerror}") from None
        return parse_hostfile(text, str(hostfile))
    return parse_host_args(hosts) if hosts else None


def mpirun_counts(np: int, per_node: int | None, nodes: int | None) -> tuple[int, int]:
    """``(nodes, tasks per node)`` for ``mnp mpirun``: tasks per node default to
    ``ceil(np / nodes)`` with ``-N``, else to 2 when np > 2 (else np); nodes to
    ``ceil(np / tasks per node)``."""
    if per_node is None:
        per_node = math.ceil(np / nodes) if nodes else (2 if np > 2 else np)
    return (nodes or math.ceil(np / per_node)), per_node


def mpirun_shape(np: int | None, per_node: int | None, nodes: int | None,
                 hosts: Sequence[str], hostfile: Path | None) -> Shape:  # fmt: skip
    """``mnp mpirun``'s options → the job's shape: from ``-H``/``--hostfile`` when given
    (:func:`host_shape`; then ``-N``/``--npernode`` must not be), else :func:`mpirun_counts`
    (``np`` required). Raises HostsError naming what is wrong."""
    listed = read_hosts(hosts, hostfile)
    if listed is not None:
        if nodes is not None or per_node is not None:
            raise HostsError("-H/--hostfile give nodes and tasks per node: no -N/--npernode")
        return host_shape(listed, np)
    if np is None:
        raise HostsError("-np is required (or -H/--hostfile, whose slots it sums)")
    nodes, per_node = mpirun_counts(np, per_node, nodes)
    return Shape(nodes, per_node, np, ())
