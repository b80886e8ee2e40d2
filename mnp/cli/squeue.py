"""``mnp squeue`` and ``mnp scancel`` (``mnp sacct``: :mod:`mnp.cli.sacct`).

The commands fetch JobSummaries (:mod:`mnp.cli.slurm_listing`), turn them into rows
(:mod:`mnp.slurm.views`) and print them as Slurm would (:mod:`mnp.slurm.columns`). Output and
exit statuses follow Slurm's tools: scancel is silent on success and says
``scancel: error: …`` (exit 1) for ids it cannot cancel.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable, Sequence
from typing import Any

import click

from mnp.cli.slurm_listing import (
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
from mnp.client.client import Client
from mnp.errors import MnpError
from mnp.slurm.columns import (
    SQUEUE_DEFAULT,
    parse_squeue_format,
    render_squeue,
    squeue_format_warnings,
)
from mnp.slurm.hostlist import expand
from mnp.slurm.views import (
    ACTIVE,
    SlurmState,
    array_index,
    array_parent_id,
    collapse_pending,
    display_id,
    is_array_parent,
    is_node_job,
    job_row,
    matches_id,
    slurm_state,
    squeue_order,
    to_mnp_id,
    visible,
)
from mnp.spec.states import TERMINAL_STATUSES

JSON = dict[str, Any]
SCANCEL_REASON = "Cancelled by user (scancel)"


# -- squeue -------------------------------------------------------------------------------------


@click.command("squeue", context_settings=LENIENT)
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
def squeue_command(state: State, jobs: tuple[str, ...], users: tuple[str, ...], me: bool,
                   partitions: tuple[str, ...], names: tuple[str, ...], states: str | None,
                   fmt: str, noheader: bool, one_per_task: bool) -> None:  # fmt: skip
    """Show queued and running jobs, as Slurm's squeue.

    Array children show as <id>_<index>; NODELIST(REASON) is the job's nodes as a Slurm
    hostlist, or why it waits: (Dependency), (JobArrayTaskLimit), (Resources), (None), ...
    """
    ignoring("squeue", click.get_current_context().args)
    try:
        for warning in squeue_format_warnings(fmt):
            click.echo(warning, err=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-o/--format") from None
    wanted_states = states_option(states, "-t/--states") or (
        frozenset(SlurmState) if jobs else ACTIVE
    )
    users_set = set(split_list(users)) | ({getpass.getuser()} if me else set())
    select = Selection(
        wanted_states, tuple(split_list(jobs)), frozenset(users_set),
        frozenset(split_list(partitions)), frozenset(split_list(names)),
    )  # fmt: skip
    client = state.client()
    now = now_ms()
    summaries = visible(fetch(client, mnp_statuses(wanted_states)))
    rows = [r for r in (job_row(s, now) for s in summaries) if select.keep(r)]
    rows.sort(key=squeue_order)
    if not one_per_task:
        rows = collapse_pending(rows)
    if "l" in {s.field for s in parse_squeue_format(fmt)} and rows:
        rows = with_limits(client, rows)
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
        if users and (s.get("submittedBy") or s.get("user")) not in users:
            continue
        if parts and s.get("jobQueueName") not in parts:
            continue
        chosen.append(s)
    parents = {s.get("jobId") for s in chosen if is_array_parent(s)}
    return [s for s in chosen if array_parent_id(s) not in parents or array_index(s) is None]


def resolve_task_ids(client: Client, ids: Sequence[str]) -> list[str]:
    """Slurm ids → mnp ids: ``<id>_<task>`` is the child of array ``<id>`` shown with that
    task id (its index, unless ``mnp sbatch --array`` listed other ids). Ids that name no
    job come back as no job's id, for the caller to report."""
    shown: dict[str, str] = {}
    sparse: set[str] = set()
    for base in dict.fromkeys(i.rpartition("_")[0] for i in ids if to_mnp_id(i) != i):
        try:
            children = client.list_jobs(array_job_id=base)
        except MnpError:  # not an array (or gone): the id is reported as unknown
            continue
        if any("taskId" in (c.get("arrayProperties") or {}) for c in children):
            sparse.add(base)
            shown.update({display_id(c): str(c["jobId"]) for c in children})
    # a task id the array does not have stays as written: no job has that id
    return [shown.get(i, i if i.rpartition("_")[0] in sparse else to_mnp_id(i)) for i in ids]


def _by_each_id(details: Sequence[JSON]) -> dict[str, JSON]:
    """Each JobDetail under every id that names it: mnp's (``id``, ``id:i``), its number and,
    for an array task, ``<array number>:<index>``."""
    out: dict[str, JSON] = {}
    for d in details:
        out[str(d["jobId"])] = d
        if isinstance(d.get("jobNumber"), int):
            out[str(d["jobNumber"])] = d
        index = (d.get("arrayProperties") or {}).get("index")
        if isinstance(d.get("arrayJobNumber"), int) and isinstance(index, int):
            out[f"{d['arrayJobNumber']}:{index}"] = d
    return out


def _expand_ids(args: Sequence[str]) -> list[str]:
    """``123 124_[1-3],125_7`` → Slurm ids, one each (brackets expanded)."""
    out: list[str] = []
    for arg in args:
        try:
            out += expand(arg)
        except ValueError as exc:
            raise click.BadParameter(f"{arg!r}: {exc}", param_hint="JOBID") from None
    return out


def _is_signal_option(arg: str) -> bool:
    """``-s SIG``, ``-sUSR1``, ``--signal=…`` or a getopt prefix of it (``--sig``)."""
    name = arg.split("=")[0]
    short = arg.startswith("-s") and not arg.startswith("--")
    return short or (len(name) >= 5 and "--signal".startswith(name))


def _error(job_id: str, why: str) -> None:
    click.echo(f"scancel: error: Kill job error on job id {job_id}: {why}", err=True)


@click.command("scancel", context_settings={**LENIENT, "help_option_names": ["-h", "--help"]})
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
def scancel_command(state: State, job_ids: tuple[str, ...], names: tuple[str, ...],
                    users: tuple[str, ...], states: str | None, partitions: tuple[str, ...],
                    verbose: bool) -> None:  # fmt: skip
    """Cancel jobs, as Slurm's scancel: pending ones never start, running ones are killed.

    JOBID is an id, <id>_<index> (one array task; <id>_[1-3] several), or an array's id (the
    whole array). With -n/-u/-t/-p, every active job matching all of them (and the ids, if
    given). Silent on success; exit 1 if any id could not be cancelled.
    """
    given = (*job_ids, *click.get_current_context().args)
    if any(_is_signal_option(a) for a in given):
        # ignoring it would cancel a job that was only to be signalled
        click.echo("scancel: error: --signal: mnp can cancel a job, not signal it", err=True)
        raise SystemExit(1)
    job_ids = tuple(ignoring("scancel", given))
    wanted_states = states_option(states, "-t/--state")
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
        targets = [(display_id(s), str(s["jobId"])) for s in chosen]
    else:
        mnp_ids = resolve_task_ids(client, ids)
        known = _by_each_id(client.describe_jobs(mnp_ids))
        targets = []
        for shown, job_id in zip(ids, mnp_ids, strict=True):
            detail = known.get(job_id)
            if detail is None:
                _error(shown, "Invalid job id specified")
                failed = True
            elif detail.get("status") in TERMINAL_STATUSES:
                _error(shown, "Job/step already completing or completed")
                failed = True
            else:
                targets.append((shown, str(detail["jobId"])))
    for shown, job_id in dict.fromkeys(targets):
        if verbose:
            click.echo(f"scancel: Terminating job {shown}", err=True)
        client.terminate(job_id, SCANCEL_REASON)
    if failed:
        raise click.exceptions.Exit(1)
