"""What the Slurm views share: fetching JobSummaries from the head, and their filters.

``fetch`` pages ``listJobs`` (``allStatuses``, ``includeChildren``); :class:`Selection` is the
``-j/-u/-p/-n/-t`` filtering squeue and sacct both do, over :class:`JobRow` s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import click

from mnp.client.client import Client
from mnp.slurm.views import MNP_STATUSES, JobRow, SlurmState, matches_id, parse_states

JSON = dict[str, Any]
PAGE = 1000
NO_HELP_SHORT = {"help_option_names": ["--help"]}
LENIENT: dict[str, Any] = {
    **NO_HELP_SHORT, "ignore_unknown_options": True, "allow_extra_args": True,
}  # fmt: skip
"""For the Slurm verbs: an option mnp does not know is warned about and ignored, not an
error (Slurm sites' scripts and tools pass options that mean nothing here)."""


def ignoring(command: str, args: Sequence[str]) -> list[str]:
    """``args`` without the options mnp does not know, each named in a warning on stderr."""
    kept = []
    for a in args:
        if a.startswith("-") and a != "-":
            click.echo(f"{command}: warning: {a.split('=')[0]} is ignored by mnp", err=True)
        else:
            kept.append(a)
    return kept
"""squeue and sacct use -h / -n for --noheader, as Slurm does."""


def fetch(client: Client, statuses: Iterable[str] | None = None) -> list[JSON]:
    """Every JobSummary (array children included) in ``statuses`` (None: every state),
    following ``nextToken``. One listJobs per status, so squeue never pages through history."""
    bodies: list[JSON] = [{"allStatuses": True, "includeChildren": True}]
    if statuses is not None:
        bodies = [dict(bodies[0], jobStatus=s) for s in sorted(set(statuses))]
    out: list[JSON] = []
    for body in bodies:
        token: str | None = None
        while True:
            page = dict(body, maxResults=PAGE, **({"nextToken": token} if token else {}))
            answer = client.call("listJobs", page)
            out.extend(answer.get("jobSummaryList") or [])
            token = answer.get("nextToken") or None
            if token is None:
                break
    return out


def mnp_statuses(states: Iterable[SlurmState]) -> set[str]:
    return {status for s in states for status in MNP_STATUSES[s]}


def split_list(values: Sequence[str]) -> list[str]:
    """Repeated and comma-separated option values, flattened."""
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def states_option(value: str | None, hint: str) -> frozenset[SlurmState] | None:
    """A ``-t``/``-s`` value parsed (None stays None); click.BadParameter when bad."""
    if value is None:
        return None
    try:
        return parse_states(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def now_ms() -> int:
    return int(time.time() * 1000)


def with_limits(client: Client, rows: list[JobRow]) -> list[JobRow]:
    """Rows with ``time_limit_seconds`` from each job's detail (``timeout``)."""
    details = {d["jobId"]: d for d in client.describe_jobs([r.mnp_id for r in rows])}
    out = []
    for row in rows:
        limit = ((details.get(row.mnp_id) or {}).get("timeout") or {}).get("attemptDurationSeconds")
        out.append(replace(row, time_limit_seconds=limit if isinstance(limit, int) else None))
    return out


@dataclass(frozen=True, slots=True)
class Selection:
    """Which rows a command shows: every given filter must match (an empty one matches all)."""

    states: frozenset[SlurmState] | None = None
    ids: tuple[str, ...] = ()
    """As given: ``id``, ``<id>_<i>``, ``<id>:<i>`` or an array's id (all its tasks)."""
    users: frozenset[str] = frozenset()
    partitions: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()

    def keep(self, row: JobRow) -> bool:
        return (
            (self.states is None or row.state in self.states)
            and (not self.ids or matches_id(row, self.ids))
            and (not self.users or row.user in self.users)
            and (not self.partitions or row.partition in self.partitions)
            and (not self.names or row.name in self.names)
        )
