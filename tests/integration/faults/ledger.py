"""Reading the jobs' own ledger (see ``job.py``) and finding work that ran twice."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One run of one attempt of one job, as the job itself recorded it."""

    job_id: str
    attempt: int
    pid: int
    start: float
    last_seen: float
    """CLOCK_MONOTONIC of its last line: its end, or a lower bound of when it was killed."""
    exit_code: int | None = None
    """None: no ``end`` line (it was killed)."""


def read_runs(path: Path) -> dict[str, list[Run]]:
    """Each job id's runs, by start time."""
    runs: dict[tuple[str, int, int], Run] = {}
    for raw in path.read_text().splitlines() if path.exists() else []:
        job_id, attempt, what, at, pid, *rest = raw.split()
        key = (job_id, int(attempt), int(pid))
        t = float(at)
        if what == "start":
            runs[key] = Run(job_id, int(attempt), int(pid), t, t)
            continue
        run = runs[key]
        run.last_seen = max(run.last_seen, t)
        if what == "end":
            run.exit_code = int(rest[0])
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs.values():
        by_job[run.job_id].append(run)
    for job_runs in by_job.values():
        job_runs.sort(key=lambda r: r.start)
    return dict(by_job)


def given_up(detail: dict[str, Any], attempt: int) -> bool:
    """Whether the head's record of ``attempt`` (1-based) says it failed or was lost: only
    then may the same work run again."""
    attempts = detail.get("attempts") or []
    if attempt > len(attempts):
        return False
    record = attempts[attempt - 1]
    code = (record.get("container") or {}).get("exitCode")
    reason = str(record.get("statusReason") or "")
    return code not in (0, None) or reason.startswith("Host") or "lost" in reason


def duplicates(runs: list[Run], detail: dict[str, Any]) -> list[str]:
    """Why ``runs`` (one job's) hold work done twice: two runs overlapping in time, two runs of
    one attempt, or a second completed run while the head's record of the first completed one
    does not say it failed or was lost."""
    found = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if b.start < a.last_seen:
                found.append(f"attempts {a.attempt} and {b.attempt} overlap in time")
            elif a.attempt == b.attempt:
                found.append(f"attempt {a.attempt} ran twice (pids {a.pid}, {b.pid})")
            elif (
                a.exit_code is not None
                and b.exit_code is not None
                and not given_up(detail, a.attempt)
            ):
                found.append(
                    f"attempts {a.attempt} and {b.attempt} both completed while the head "
                    f"records attempt {a.attempt} as neither failed nor lost"
                )
    return [f"{runs[0].job_id}: {why}" for why in found]
