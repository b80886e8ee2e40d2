"""Jobs on a benchmark's head: the job definition most benchmarks use, waiting for jobs to
end, and reading their status history."""

from __future__ import annotations

from benchmarks.config import JSON, TERMINAL
from benchmarks.polling import wait_for
from mnp.client.client import Client


def definition(name: str, command: list[str]) -> JSON:
    """A one-vCPU ``container`` job definition (a process job, no image) running ``command``."""
    return {
        "jobDefinitionName": name,
        "type": "container",
        "containerProperties": {
            "command": command,
            "resourceRequirements": [{"type": "VCPU", "value": "1"}],
        },
    }


def wait_terminal_count(c: Client, expected: int, timeout: float, interval: float = 0.02) -> None:
    """Until getStatus counts ``expected`` SUCCEEDED+FAILED jobs (or more)."""
    def done() -> bool:
        counts = c.status()["jobCounts"]
        return sum(int(counts.get(s, 0)) for s in TERMINAL) >= expected
    wait_for(f"{expected} terminal jobs", done, timeout, interval)


def wait_job(c: Client, job_id: str, timeout: float, interval: float = 0.05) -> JSON:
    """The job's description once it is SUCCEEDED or FAILED."""
    def terminal() -> JSON | None:
        d = c.describe(job_id)
        return d if d["status"] in TERMINAL else None
    return wait_for(f"job {job_id} to finish", terminal, timeout, interval)


def history_at(detail: JSON, status: str) -> int | None:
    """When (head clock, epoch ms) the job first reached ``status``; None if it did not."""
    for h in detail.get("history", []):
        if h.get("status") == status:
            return int(h["at"])
    return None


def history_s(detail: JSON, start: str, end: str) -> float:
    """Seconds between two statuses of a job's history (head clock, epoch ms)."""
    a, b = history_at(detail, start), history_at(detail, end)
    if a is None or b is None:
        raise RuntimeError(f"{detail['jobId']}: no {start} or {end} in {detail.get('history')}")
    return (b - a) / 1000
