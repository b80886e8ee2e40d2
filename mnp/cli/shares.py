"""``mnp shares QUEUE``: the shares of a fair-share queue, in the order the scheduler serves
them, with each one's decayed usage, weight factor and the vCPUs it holds now."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from mnp.cli.render import new_table, wide_console
from mnp.cli.state import State, json_option, pass_state, print_json

JSON = dict[str, Any]


def shares_table(answer: JSON) -> Table:
    """One row per share, lowest weighted usage (served first) at the top."""
    table = new_table(
        "SHARE", "USAGE (vCPU-s)", "WEIGHT", "WEIGHTED", "RUNNING vCPUs", "RUNNABLE", "ACTIVE"
    )
    for s in answer.get("shares") or []:
        table.add_row(
            str(s.get("shareIdentifier") or "-"),
            f"{float(s.get('usageVcpuSeconds') or 0):.1f}",
            f"{float(s.get('weightFactor') or 0):g}",
            f"{float(s.get('weightedUsage') or 0):.1f}",
            f"{float(s.get('runningVcpus') or 0):g}",
            str(s.get("runnableJobs") or 0),
            "yes" if s.get("active") else "no",
        )
    return table


def shares_summary(answer: JSON) -> str:
    """The policy line above the table: decay, reservation and what it holds back now."""
    return (
        f"queue {answer.get('jobQueue')}: decay {float(answer.get('shareDecaySeconds') or 0):g} s,"
        f" compute reservation {answer.get('computeReservation') or 0}%"
        f" ({float(answer.get('reservedVcpus') or 0):g} of"
        f" {float(answer.get('maxVcpus') or 0):g} vCPUs held for new shares)"
    )


@click.command("shares")
@click.argument("queue")
@json_option
@pass_state
def shares_command(state: State, queue: str, as_json: bool) -> None:
    """Show the shares of fair-share queue QUEUE: usage, weight and running vCPUs."""
    answer = state.client().call("describeShares", {"jobQueue": queue})
    if as_json:
        print_json(answer)
        return
    console = wide_console()
    console.print(shares_summary(answer))
    console.print(shares_table(answer))
