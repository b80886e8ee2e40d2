"""``mnp sacct``: every job of a time window, ended ones included, in sacct's columns.

Rows come as for squeue (:mod:`mnp.cli.slurm_listing`, :mod:`mnp.slurm.views`); the window is
``--starttime``/``--endtime`` in Slurm's time formats (:mod:`mnp.slurm.times`).
"""

from __future__ import annotations

import getpass
from datetime import datetime

import click

from mnp.cli.slurm_listing import (
    JSON,
    LENIENT,
    Selection,
    fetch,
    ignoring,
    mnp_statuses,
    now_ms,
    split_list,
    states_option,
    with_limits,
)
from mnp.cli.state import State
from mnp.slurm.columns import (
    SACCT_DEFAULT,
    parse_sacct_format,
    render_sacct,
    sacct_format_warnings,
)
from mnp.slurm.times import TIME_FORMATS, parse_slurm_time
from mnp.slurm.views import JobRow, collapse_pending, job_row, visible


def _time(value: str | None, param: str) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_slurm_time(value, datetime.now().astimezone()).timestamp() * 1000)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}", param_hint=param) from None


def in_window(summary: JSON, start_ms: int | None, end_ms: int | None, now: int) -> bool:
    """sacct's time window: the job existed (submitted, not yet ended) at some time in it."""
    stopped = summary.get("stoppedAt")
    created = summary.get("createdAt")
    if start_ms is not None and (stopped if isinstance(stopped, int) else now) < start_ms:
        return False
    return not (end_ms is not None and isinstance(created, int) and created > end_ms)


@click.command("sacct", context_settings=LENIENT)
@click.option(
    "-j",
    "--jobs",
    "jobs",
    multiple=True,
    metavar="ID[,ID]",
    help="Only these jobs (id, <id>_<i>, or an array id for all its tasks).",
)
@click.option(
    "-S",
    "--starttime",
    metavar="TIME",
    help=f"Jobs not ended before this ({TIME_FORMATS}; default: midnight today, "
    "or all time with -j or -s).",
)
@click.option("-E", "--endtime", metavar="TIME", help="Jobs submitted before this.")
@click.option(
    "-o",
    "--format",
    "fmt",
    default=SACCT_DEFAULT,
    show_default=True,
    help="Fields (case-insensitive; Name%WIDTH): JobID, JobIDRaw, JobName, "
    "Partition, User, State, ExitCode, Elapsed, ElapsedRaw, NodeList, NNodes, "
    "Submit, Start, End, Reason, Timelimit.",
)
@click.option(
    "-s",
    "--state",
    "states",
    metavar="STATE[,STATE]",
    help="Only these states (CD, F, CA, TO, NF, R, PD, ...).",
)
@click.option(
    "-u", "--user", "users", multiple=True, metavar="USER[,USER]", help="Only these users' jobs."
)
@click.option("-a", "--allusers", is_flag=True, help="Every user's jobs (root: the default).")
@click.option(
    "-r",
    "--partition",
    "partitions",
    multiple=True,
    metavar="QUEUE[,QUEUE]",
    help="Only these partitions (job queues).",
)
@click.option("--name", "names", multiple=True, metavar="NAME[,NAME]", help="Only these names.")
@click.option(
    "-X",
    "--allocations",
    is_flag=True,
    help="Only allocations (mnp has no job steps: every line is one).",
)
@click.option("-n", "--noheader", is_flag=True, help="No header lines.")
@click.option("-p", "--parsable", is_flag=True, help="'|' after every field.")
@click.option("-P", "--parsable2", is_flag=True, help="'|' between fields.")
@click.pass_obj
def sacct_command(state: State, jobs: tuple[str, ...], starttime: str | None,
                  endtime: str | None, fmt: str, states: str | None, users: tuple[str, ...],
                  allusers: bool, partitions: tuple[str, ...], names: tuple[str, ...],
                  allocations: bool, noheader: bool, parsable: bool,
                  parsable2: bool) -> None:  # fmt: skip
    """Show jobs of today (or since --starttime), ended ones included, as Slurm's sacct.

    Default columns: JobID JobName State ExitCode Elapsed NodeList. ExitCode is
    code:signal; a job mnp killed (CANCELLED, TIMEOUT, NODE_FAIL) with code 128+N shows 0:N.
    Without -u or -a, only your jobs (root: everyone's).
    """
    ignoring("sacct", click.get_current_context().args)
    try:
        for warning in sacct_format_warnings(fmt):
            click.echo(warning, err=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-o/--format") from None
    wanted_states = states_option(states, "-s/--state")
    ids = split_list(jobs)
    start = _time(starttime, "-S/--starttime")
    if start is None and not ids and wanted_states is None:
        start = _time("midnight", "-S/--starttime")
    end = _time(endtime, "-E/--endtime")
    user_set = set(split_list(users))
    me = getpass.getuser()
    if not user_set and not allusers and me != "root":
        user_set = {me}
    select = Selection(
        wanted_states, tuple(ids), frozenset(user_set), frozenset(split_list(partitions)),
        frozenset(split_list(names)),
    )  # fmt: skip
    client = state.client()
    now = now_ms()
    statuses = mnp_statuses(wanted_states) if wanted_states is not None else None
    summaries = [s for s in visible(fetch(client, statuses)) if in_window(s, start, end, now)]
    rows = [r for r in (job_row(s, now) for s in summaries) if select.keep(r)]
    rows = collapse_pending(
        sorted(rows, key=lambda r: (r.submit_ms or 0, r.array_job_id, _task(r)))
    )
    if "timelimit" in {f.name.lower() for f, _ in parse_sacct_format(fmt)} and rows:
        rows = with_limits(client, rows)
    mode = "|2" if parsable2 else "|" if parsable else None
    click.echo(render_sacct(rows, fmt, header=not noheader, parsable=mode), nl=False)


def _task(row: JobRow) -> int:
    return int(row.array_task) if row.array_task.isdigit() else -1
