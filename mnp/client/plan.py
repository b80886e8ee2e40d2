"""Planning a submission of Python API specs (:mod:`mnp.client.dsl`): which jobs, in which order.

Pure: :func:`plan` takes specs and returns them with everything they depend on, dependencies
first, or raises :class:`mnp.errors.InvalidInput` listing every problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mnp.client.dsl import After, ArrayJob, Job
from mnp.errors import FieldError, InvalidInput


def plan(jobs: Job | Iterable[Job]) -> list[Job]:
    """``jobs`` and every spec they depend on (by object), each once, ordered so that a job
    comes after everything it depends on (otherwise in the order given).

    Raises :class:`InvalidInput` listing every problem: two different specs with one name, a
    dependency naming no job of the set, an ``n_to_n`` dependency between jobs that are not
    arrays of one size, an ``index`` out of range, and a dependency cycle (naming its jobs).
    """
    given = [jobs] if isinstance(jobs, Job) else list(jobs)
    errors: list[FieldError] = []
    by_name: dict[str, Job] = {}
    queue: list[Any] = list(given)
    while queue:
        job = queue.pop(0)
        if not isinstance(job, Job):
            errors.append(FieldError("jobs", f"not a Job, ArrayJob or MpiJob: {job!r}"))
            continue
        seen = by_name.get(job.name)
        if seen is not None:
            clash = FieldError(job.name, "two different jobs have this name")
            if seen is not job and seen != job and clash not in errors:
                errors.append(clash)
            continue
        by_name[job.name] = job
        deps = [d.job if isinstance(d, After) else d for d in job.depends_on]
        queue += [d for d in deps if isinstance(d, Job)]  # names are resolved below
    if errors:  # what follows would resolve names against the wrong job
        raise InvalidInput(errors)
    edges: dict[str, list[str]] = {}
    for name, job in by_name.items():
        edges[name] = []
        for i, dep in enumerate(job.depends_on):
            after = dep if isinstance(dep, After) else After(dep)
            target = by_name.get(after.name)
            where = f"{name}.depends_on[{i}]"
            if target is None:
                errors.append(FieldError(where, f"no job named {after.name!r} is submitted"))
                continue
            if target.name == name:
                errors.append(FieldError(where, "a job cannot depend on itself"))
                continue
            errors += _check_pair(where, job, target, after)
            edges[name].append(target.name)
    if errors:
        raise InvalidInput(errors)
    return [by_name[n] for n in _topological(edges)]


def _check_pair(where: str, job: Job, target: Job, after: After) -> list[FieldError]:
    if after.condition == "n_to_n":
        if not isinstance(job, ArrayJob) or not isinstance(target, ArrayJob):
            return [FieldError(where, "n_to_n links two array jobs")]
        if job.size != target.size:
            return [
                FieldError(where, f"n_to_n needs arrays of one size: {job.size} ≠ {target.size}")
            ]
    if after.index is not None:
        if not isinstance(target, ArrayJob):
            return [FieldError(where, f"index {after.index}: {target.name} is not an array job")]
        if after.index >= target.size:
            last = target.size - 1
            return [FieldError(where, f"index {after.index}: {target.name} has children 0..{last}")]
    return []


def _topological(edges: Mapping[str, list[str]]) -> list[str]:
    """Names ordered dependencies first, stable otherwise; InvalidInput naming a cycle."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(edges)
    while remaining:
        ready = [n for n in remaining if all(d in placed for d in edges[n])]
        if not ready:
            cycle = _cycle(edges, remaining)
            raise InvalidInput([FieldError("depends_on", "dependency cycle: " + " → ".join(cycle))])
        for n in ready:
            order.append(n)
            placed.add(n)
        remaining = [n for n in remaining if n not in placed]
    return order


def _cycle(edges: Mapping[str, list[str]], among: Sequence[str]) -> list[str]:
    """One cycle among ``among`` (every one of which lies on or leads to a cycle), closed:
    ``[a, b, a]``."""
    path: list[str] = [among[0]]
    while True:
        nxt = next(d for d in edges[path[-1]] if d in among)
        if nxt in path:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)
