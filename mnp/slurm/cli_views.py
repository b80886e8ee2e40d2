"""``mnp squeue``, ``mnp scancel`` and ``mnp sacct``: Slurm's views over the head's jobs.

The commands fetch JobSummaries (``listJobs`` with ``allStatuses`` and ``includeChildren``,
paged), turn them into rows (:mod:`mnp.slurm.views`) and print them as Slurm would
(:mod:`mnp.slurm.columns`). Output and exit statuses follow Slurm's tools: scancel is silent
on success and says ``scancel: error: …`` (exit 1) for ids it cannot cancel.
"""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import click

from mnp.client import Client
from mnp.slurm.columns import (
    SACCT_DEFAULT,
    SQUEUE_DEFAULT,
    parse_sacct_format,
    parse_squeue_format,
    render_sacct,
    render_squeue,
)
from mnp.slurm.hostlist import expand
from mnp.slurm.times import TIME_FORMATS, parse_slurm_time
from mnp.slurm.views import (
    ACTIVE,
    MNP_STATUSES,
    JobRow,
    SlurmState,
    array_index,
    array_job_id,
    collapse_pending,
    is_array_parent,
    is_node_job,
    job_row,
    matches_id,
    parse_states,
    slurm_state,
    squeue_order,
    to_mnp_id,
    visible,
)

JSON = dict[str, Any]
PAGE = 1000
SCANCEL_REASON = "Cancelled by user (scancel)"
NO_HELP_SHORT = {"help_option_names": ["--help"]}
"""squeue and sacct use -h / -n for --noheader, as Slurm does."""


class HasClient(Protocol):
    """The CLI's state object (``mnp.cli.State``), as far as these commands need it."""

    def client(self) -> Client: ...


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


def _states(value: str | None) -> frozenset[SlurmState] | None:
    if value is None:
        return None
    try:
        return parse_states(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-t/--states") from None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _with_limits(client: Client, rows: list[JobRow]) -> list[JobRow]:
    """Rows with ``time_limit_seconds`` from each job's detail (``timeout``)."""
    from dataclasses import replace

    details = {d["jobId"]: d for d in client.describe_jobs([r.raw_id for r in rows])}
    out = []
    for row in rows:
        limit = ((details.get(row.raw_id) or {}).get("timeout") or {}).get("attemptDurationSeconds")
        out.append(replace(row, time_limit_seconds=limit if isinstance(limit, int) else None))
    return out


# -- squeue -------------------------------------------------------------------------------------


@click.command("squeue", context_settings=NO_HELP_SHORT)
@click.option(
    "-j",
    "--jobs",
    "jobs",
    multiple=True,
    metavar="ID[,ID]",
    help="Only these jobs (id, <id>_<i>, or an array id for all its children); "
    "in any state unless -t.",
)
@click.option(
    "-u", "--user", "users", multiple=True, metavar="USER[,USER]", help="Only these users' jobs."
)
@click.option("--me", is_flag=True, help="Only my jobs.")
@click.option(
    "-p",
    "--partition",
    "partitions",
    multiple=True,
    metavar="QUEUE[,QUEUE]",
    help="Only these partitions (job queues).",
)
@click.option(
    "-n",
    "--name",
    "names",
    multiple=True,
    metavar="NAME[,NAME]",
    help="Only jobs with these names.",
)
@click.option(
    "-t",
    "--states",
    "states",
    metavar="STATE[,STATE]",
    help="Only these states: PD,CF,R,CG,CD,F,TO,CA,NF (or long names), or all "
    "(default: PD,CF,R,CG).",
)
@click.option(
    "-o",
    "--format",
    "fmt",
    default=SQUEUE_DEFAULT,
    show_default=True,
    help="Columns: %i %A %F %K %P %j %u %t %T %M %D %R %N %r %l %V %S, "
    "with widths like %.18i (right-justified) or %-10j.",
)
@click.option("-h", "--noheader", is_flag=True, help="No header line.")
@click.option(
    "-r",
    "--array",
    "one_per_task",
    is_flag=True,
    help="One line per pending array task (default: pending tasks share a line).",
)
@click.pass_obj
def squeue_command(state: HasClient, jobs: tuple[str, ...], users: tuple[str, ...], me: bool,
                   partitions: tuple[str, ...], names: tuple[str, ...], states: str | None,
                   fmt: str, noheader: bool, one_per_task: bool) -> None:  # fmt: skip
    """Show queued and running jobs, as Slurm's squeue.

    Array children show as <id>_<index>; NODELIST(REASON) is the job's nodes as a Slurm
    hostlist, or why it waits: (Dependency), (JobArrayTaskLimit), (Resources), (None), ...
    """
    try:
        parse_squeue_format(fmt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-o/--format") from None
    wanted_states = _states(states) or (frozenset(SlurmState) if jobs else ACTIVE)
    ids, user_set = split_list(jobs), set(split_list(users))
    if me:
        user_set.add(getpass.getuser())
    parts, name_set = set(split_list(partitions)), set(split_list(names))
    client = state.client()
    now = _now_ms()
    rows = [job_row(s, now) for s in visible(fetch(client, mnp_statuses(wanted_states)))]
    rows = [
        r for r in rows
        if r.state in wanted_states
        and (not ids or matches_id(r, ids))
        and (not user_set or r.user in user_set)
        and (not parts or r.partition in parts)
        and (not name_set or r.name in name_set)
    ]  # fmt: skip
    rows.sort(key=squeue_order)
    if not one_per_task:
        rows = collapse_pending(rows)
    if "l" in {s.field for s in parse_squeue_format(fmt)} and rows:
        rows = _with_limits(client, rows)
    click.echo(render_squeue(rows, fmt, header=not noheader), nl=False)


# -- scancel ------------------------------------------------------------------------------------


def _selected(summaries: Iterable[JSON], names: set[str], users: set[str], parts: set[str],
              states: frozenset[SlurmState] | None) -> list[JSON]:  # fmt: skip
    """Active jobs matching every filter. An array parent is chosen (and cancels all its
    children) only without a state filter; its chosen children are then left out."""
    chosen = []
    for s in summaries:
        if is_node_job(s) or slurm_state(s).ended:
            continue
        if is_array_parent(s) and states is not None:
            continue
        if states is not None and slurm_state(s) not in states:
            continue
        if names and s.get("jobName") not in names:
            continue
        if users and s.get("user") not in users:
            continue
        if parts and s.get("jobQueueName") not in parts:
            continue
        chosen.append(s)
    parents = {s.get("jobId") for s in chosen if is_array_parent(s)}
    return [s for s in chosen if array_job_id(s) not in parents or array_index(s) is None]


def _expand_ids(args: Sequence[str]) -> list[str]:
    """``123 124_[1-3],125_7`` → Slurm ids, one each (brackets expanded)."""
    out: list[str] = []
    for arg in args:
        try:
            out += expand(arg)
        except ValueError as exc:
            raise click.BadParameter(f"{arg!r}: {exc}", param_hint="JOBID") from None
    return out


def _error(job_id: str, why: str) -> None:
    click.echo(f"scancel: error: Kill job error on job id {job_id}: {why}", err=True)


@click.command("scancel", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("job_ids", nargs=-1, metavar="[JOBID[_INDEX]]...")
@click.option(
    "-n", "--name", "--jobname", "names", multiple=True, metavar="NAME", help="Jobs with this name."
)
@click.option(
    "-u",
    "--user",
    "users",
    multiple=True,
    metavar="USER",
    help="Jobs of this user (default with -n/-t/-p: yours).",
)
@click.option(
    "-t",
    "--state",
    "states",
    metavar="STATE[,STATE]",
    help="Only jobs in these states (PD, R, ...).",
)
@click.option(
    "-p",
    "--partition",
    "partitions",
    multiple=True,
    metavar="QUEUE",
    help="Only jobs in this partition (job queue).",
)
@click.option("-v", "--verbose", is_flag=True, help="Say what is cancelled.")
@click.pass_obj
def scancel_command(state: HasClient, job_ids: tuple[str, ...], names: tuple[str, ...],
                    users: tuple[str, ...], states: str | None, partitions: tuple[str, ...],
                    verbose: bool) -> None:  # fmt: skip
    """Cancel jobs, as Slurm's scancel: pending ones never start, running ones are killed.

    JOBID is an id, <id>_<index> (one array task; <id>_[1-3] several), or an array's id (the
    whole array). With -n/-u/-t/-p, every active job matching all of them (and the ids, if
    given). Silent on success; exit 1 if any id could not be cancelled.
    """
    wanted_states = _states(states)
    name_set, part_set = set(split_list(names)), set(split_list(partitions))
    user_set = set(split_list(users))
    filtered = bool(name_set or part_set or user_set or wanted_states)
    if not job_ids and not filtered:
        raise click.UsageError("No job identification provided")
    client = state.client()
    failed = False
    ids = _expand_ids(job_ids)
    if filtered:
        if not user_set:
            user_set = {getpass.getuser()}
        active = mnp_statuses(ACTIVE)
        chosen = _selected(fetch(client, active), name_set, user_set, part_set, wanted_states)
        if ids:
            chosen = [s for s in chosen if matches_id(job_row(s, 0), ids)]
        targets = [(str(s["jobId"]), str(s["jobId"])) for s in chosen]
    else:
        mnp_ids = [to_mnp_id(i) for i in ids]
        known = {d["jobId"]: d for d in client.describe_jobs(mnp_ids)}
        targets = []
        for shown, job_id in zip(ids, mnp_ids, strict=True):
            detail = known.get(job_id)
            if detail is None:
                _error(shown, "Invalid job id specified")
                failed = True
            elif detail.get("status") in ("SUCCEEDED", "FAILED"):
                _error(shown, "Job/step already completing or completed")
                failed = True
            else:
                targets.append((shown, job_id))
    for shown, job_id in dict.fromkeys(targets):
        if verbose:
            click.echo(f"scancel: Terminating job {shown}", err=True)
        client.terminate(job_id, SCANCEL_REASON)
    if failed:
        raise click.exceptions.Exit(1)


# -- sacct --------------------------------------------------------------------------------------


def _time(value: str | None, param: str) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_slurm_time(value, datetime.now().astimezone()).timestamp() * 1000)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}", param_hint=param) from None


def in_window(summary: JSON, start_ms: int | None, end_ms: int | None, now_ms: int) -> bool:
    """sacct's time window: the job existed (submitted, not yet ended) at some time in it."""
    stopped = summary.get("stoppedAt")
    created = summary.get("createdAt")
    if start_ms is not None and (stopped if isinstance(stopped, int) else now_ms) < start_ms:
        return False
    return not (end_ms is not None and isinstance(created, int) and created > end_ms)


@click.command("sacct", context_settings=NO_HELP_SHORT)
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
def sacct_command(state: HasClient, jobs: tuple[str, ...], starttime: str | None,
                  endtime: str | None, fmt: str, states: str | None, users: tuple[str, ...],
                  allusers: bool, partitions: tuple[str, ...], names: tuple[str, ...],
                  allocations: bool, noheader: bool, parsable: bool,
                  parsable2: bool) -> None:  # fmt: skip
    """Show jobs of today (or since --starttime), ended ones included, as Slurm's sacct.

    Default columns: JobID JobName State ExitCode Elapsed NodeList. ExitCode is
    code:signal; a job mnp killed (CANCELLED, TIMEOUT, NODE_FAIL) with code 128+N shows 0:N.
    Without -u or -a, only your jobs (root: everyone's).
    """
    try:
        parse_sacct_format(fmt)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-o/--format") from None
    wanted_states = _states(states)
    ids = split_list(jobs)
    start = _time(starttime, "-S/--starttime")
    if start is None and not ids and wanted_states is None:
        start = _time("midnight", "-S/--starttime")
    end = _time(endtime, "-E/--endtime")
    user_set = set(split_list(users))
    me = getpass.getuser()
    if not user_set and not allusers and me != "root":
        user_set = {me}
    parts, name_set = set(split_list(partitions)), set(split_list(names))
    client = state.client()
    now = _now_ms()
    statuses = mnp_statuses(wanted_states) if wanted_states is not None else None
    summaries = [s for s in visible(fetch(client, statuses)) if in_window(s, start, end, now)]
    rows = [job_row(s, now) for s in summaries]
    rows = [
        r for r in rows
        if (wanted_states is None or r.state in wanted_states)
        and (not ids or matches_id(r, ids))
        and (not user_set or r.user in user_set)
        and (not parts or r.partition in parts)
        and (not name_set or r.name in name_set)
    ]  # fmt: skip
    rows = collapse_pending(
        sorted(rows, key=lambda r: (r.submit_ms or 0, r.array_job_id, _task(r)))
    )
    if "timelimit" in {f.name.lower() for f, _ in parse_sacct_format(fmt)} and rows:
        rows = _with_limits(client, rows)
    mode = "|2" if parsable2 else "|" if parsable else None
    click.echo(render_sacct(rows, fmt, header=not noheader, parsable=mode), nl=False)


def _task(row: JobRow) -> int:
    return int(row.array_task) if row.array_task.isdigit() else -1
