"""``mnp why JOB``: why a job is where it is, from one ``explainJob`` call: its status and
reason, how many jobs would start before it in its queue, the capacity of the queue's compute
environments, and on a fair-share queue its share against the others (``mnp shares``' table)."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from mnp.cli.render import new_table, wide_console
from mnp.cli.shares import shares_summary, shares_table
from mnp.cli.state import State, json_option, pass_state, print_json

JSON = dict[str, Any]


def _num(value: Any) -> str:
    """A count or amount as it reads best: ``4`` rather than ``4.0``; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{float(value):g}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def why_lines(answer: JSON) -> list[str]:
    """The text above the tables: status, reason, position and what the job needs."""
    name = answer.get("jobName") or "-"
    lines = [
        f"job {answer.get('jobId')} ({name}) is {answer.get('status')}"
        f" in queue {answer.get('jobQueue')}"
    ]
    reason = answer.get("statusReason")
    lines.append(f"  reason: {reason}" if reason else "  reason: (none given)")
    needs = answer.get("needs") or {}
    what = f"{_num(needs.get('vcpus'))} vCPUs, {_num(needs.get('memoryMiB'))} MiB"
    if needs.get("gpus"):
        what += f", {_num(needs.get('gpus'))} GPUs"
    if (needs.get("nodes") or 1) > 1:
        what += f" over {needs.get('nodes')} nodes"
    lines.append(f"  needs: {what}")
    queue = answer.get("queue")
    if queue is None:
        lines.append("  its queue no longer exists")
        return lines
    order = "fair-share order" if queue.get("order") == "FAIR_SHARE" else "FIFO order"
    position = answer.get("position")
    if position is not None:
        ahead = int(position.get("jobsAhead") or 0)
        if ahead == 0:
            lines.append(f"  position: first in its queue ({order})")
        else:
            lines.append(
                f"  position: {_plural(ahead, 'job')} ahead of it ({order}),"
                f" needing {_num(position.get('vcpusAhead'))} vCPUs"
            )
            for row in position.get("ahead") or []:
                label = f" {row['jobName']}" if row.get("jobName") else ""
                of = f" share {row['shareIdentifier']}" if row.get("shareIdentifier") else ""
                lines.append(f"    ahead: {row.get('jobId')}{label} ({_num(row.get('vcpus'))}"
                             f" vCPUs{of})")  # fmt: skip
            if ahead > len(position.get("ahead") or []):
                lines.append(f"    … and {ahead - len(position.get('ahead') or [])} more")
    share = answer.get("shareIdentifier")
    if queue.get("order") == "FAIR_SHARE":
        lines.append(f"  share: {share if share else '(none: the empty share)'},"
                     f" priority {answer.get('schedulingPriority') or 0}")  # fmt: skip
    lines.append(
        f"queue {queue.get('name')}: {queue.get('state')}, priority {queue.get('priority')},"
        f" {_plural(int(queue.get('runnableJobs') or 0), 'RUNNABLE job')}"
    )
    for limit in queue.get("jobStateTimeLimitActions") or []:
        lines.append(
            f"  {limit.get('action')} after {limit.get('maxTimeSeconds')} s at the front"
            f" with reason {limit.get('reason')}"
        )
    return lines


def capacity_table(answer: JSON) -> Any:
    """One row per compute environment of the job's queue, in the order they are tried."""
    table = new_table(
        "ENVIRONMENT", "STATE", "STATUS", "NODES", "FREE vCPUs", "FREE MiB", "LARGEST FREE",
        "DESIRED/MAX vCPUs",
    )  # fmt: skip
    for ce in answer.get("computeEnvironments") or []:
        nodes = str(ce.get("activeNodes", 0))
        if ce.get("launchingNodes"):
            nodes += f" (+{ce['launchingNodes']} launching)"
        largest = ce.get("largestFree") or {}
        table.add_row(
            str(ce.get("computeEnvironmentName")),
            str(ce.get("state", "-")),
            str(ce.get("status", "-")),
            nodes,
            f"{_num(ce.get('freeVcpus'))} of {_num(ce.get('totalVcpus'))}",
            f"{_num(ce.get('freeMemoryMiB'))} of {_num(ce.get('totalMemoryMiB'))}",
            f"{_num(largest.get('vcpus'))} vCPUs / {_num(largest.get('memoryMiB'))} MiB",
            f"{_num(ce.get('desiredvCpus'))}/{_num(ce.get('maxvCpus'))}",
        )
    return table


def print_why(console: Console, answer: JSON) -> None:
    for line in why_lines(answer):
        console.print(line, markup=False)
    if answer.get("computeEnvironments"):
        console.print("compute environments:")
        console.print(capacity_table(answer))
    shares = answer.get("shares")
    if shares:
        console.print(shares_summary(shares), markup=False)
        console.print(shares_table(shares))


@click.command("why")
@click.argument("job")
@json_option
@pass_state
def why_command(state: State, job: str, as_json: bool) -> None:
    """Explain why JOB is where it is: its reason, position in its queue, capacity, shares."""
    answer = state.client().call("explainJob", {"jobId": job})
    if as_json:
        print_json(answer)
        return
    print_why(wide_console(), answer)
