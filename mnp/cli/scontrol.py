"""``mnp scontrol``: the parts of Slurm's scontrol that job scripts and tools call.

``show job [ID]`` and ``show node [NAME]`` print Slurm's ``Key=value`` records
(:mod:`mnp.slurm.scontrol`; ``-o`` one line each); ``show partition [NAME]`` a job queue as a
partition; ``show hostnames [LIST]`` and ``show hostlist NAMES`` expand and compress
hostlists without asking the head, so ``scontrol show hostnames "$SLURM_JOB_NODELIST"`` works
in any job. ``requeue`` puts a running job back in its queue (submitit's checkpointing calls
it); ``hold``/``uhold`` keep a job that has not started PENDING until ``release``;
``update JobId=…`` changes TimeLimit, Priority and ArrayTaskThrottle of a job that has not
finished, and refuses any other field naming it.

Options are read anywhere on the line, as Slurm's getopt does; options that do not apply
(``-d``, ``-a``, ``-M``, ...) are accepted with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import click

from mnp.cli.slurm_listing import fetch, mnp_statuses, now_ms
from mnp.cli.squeue import resolve_task_ids
from mnp.cli.state import State
from mnp.client.client import Client
from mnp.errors import MnpError
from mnp.slurm.hostlist import compress, expand
from mnp.slurm.scontrol import Record, job_record, node_record, render_record
from mnp.slurm.sinfo import queue_environments
from mnp.slurm.values import parse_time
from mnp.slurm.views import ACTIVE, is_array_parent, is_node_job, visible
from mnp.spec import DEFAULT_QUEUE

JSON = dict[str, Any]
UNSUPPORTED = {
    "requeuehold": "mnp cannot requeue and hold at once: scontrol requeue, then scontrol hold",
    "suspend": "mnp cannot suspend a job",
    "resume": "mnp cannot suspend or resume a job",
    "top": "mnp has no per-user job priorities",
}


def _fail(message: str, prefix: str = "scontrol: error: ") -> click.exceptions.Exit:
    click.echo(f"{prefix}{message}", err=True)
    return click.exceptions.Exit(1)


def _split_options(argv: Sequence[str]) -> tuple[list[str], bool]:
    """The words of the command line and whether ``-o``/``--oneliner`` was among them;
    other options are dropped with a warning."""
    words: list[str] = []
    one_line = False
    rest = False
    for arg in argv:
        if rest or not arg.startswith("-") or arg == "-":
            words.append(arg)
        elif arg == "--":
            rest = True
        elif arg in ("-o", "--oneliner", "--one-liner"):
            one_line = True
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) <= set("oQvda"):
            one_line = one_line or "o" in arg  # -od, -Qo: short flags together
            if set(arg[1:]) - {"o", "Q"}:
                click.echo(f"mnp scontrol: warning: ignoring {arg} (no effect on mnp)", err=True)
        else:
            click.echo(f"mnp scontrol: warning: ignoring {arg} (no effect on mnp)", err=True)
    return words, one_line


def _is(word: str, name: str, shortest: int = 3) -> bool:
    """Slurm's abbreviations: ``show jobs``, ``show job``, ``sh job``... (``word`` a prefix
    of ``name`` of at least ``shortest`` letters, or ``name`` with a plural ``s``)."""
    w = word.lower()
    return (len(w) >= min(shortest, len(name)) and name.startswith(w)) or w == name + "s"


def _job_details(client: Client, ids: Sequence[str]) -> list[JSON]:
    """JobDetails for the Slurm ids given (an array's id: every task of it), or for every
    job squeue would list when none is given. Raises Exit(1) for an id no job has."""
    if not ids:
        summaries = visible(fetch(client, mnp_statuses(ACTIVE)))
        details = client.describe_jobs([str(s["jobId"]) for s in summaries])
        details.sort(key=lambda d: (d.get("jobNumber") or 0, str(d.get("jobId"))))  # oldest first
    else:
        details = []
        for mnp_id in resolve_task_ids(client, ids):
            found = client.describe_jobs([mnp_id])
            if not found:
                raise _fail("slurm_load_jobs error: Invalid job id specified", prefix="")
            details += found
    out: list[JSON] = []
    for d in details:
        if is_node_job(d):
            continue
        if is_array_parent(d):
            children = client.list_jobs(array_job_id=str(d["jobId"]))
            kids = client.describe_jobs([str(c["jobId"]) for c in children])
            out += sorted(kids, key=lambda k: (k.get("arrayProperties") or {}).get("index", 0))
        else:
            out.append(d)
    return out


def _partitions_of(queues: Sequence[JSON]) -> dict[str, list[str]]:
    """Compute environment name → the queues (partitions) drawing on it."""
    out: dict[str, list[str]] = {}
    for q in queues:
        for env in queue_environments(q):
            out.setdefault(env, []).append(str(q.get("jobQueueName", "")))
    return out


def _partition_record(queue: JSON, nodes: Sequence[JSON]) -> Record:
    name = str(queue.get("jobQueueName", ""))
    envs = set(queue_environments(queue))
    mine = [str(n.get("nodeId", "")) for n in nodes if n.get("computeEnvironment") in envs]
    cpus = sum(int(n.get("vcpus") or 0) for n in nodes if n.get("computeEnvironment") in envs)
    memory = sum(int(n.get("memoryMiB") or 0) for n in nodes
                 if n.get("computeEnvironment") in envs)  # fmt: skip
    enabled = queue.get("state", "ENABLED") == "ENABLED"
    default = "YES" if name == DEFAULT_QUEUE else "NO"
    tres = f"cpu={cpus},mem={memory}M,node={len(mine)},billing={cpus}" if mine else "(null)"
    return [  # Slurm 22.05's lines (tests/golden/slurm/scontrol-partition.txt)
        f"PartitionName={name}",
        "AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL",
        f"AllocNodes=ALL Default={default} QoS=N/A",
        "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO",
        "MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED",
        f"Nodes={compress(mine) or '(null)'}",
        f"PriorityJobFactor=1 PriorityTier={queue.get('priority', 1)} RootOnly=NO ReqResv=NO"
        " OverSubscribe=NO",
        "OverTimeLimit=NONE PreemptMode=OFF",
        f"State={'UP' if enabled else 'DRAIN'} TotalCPUs={cpus} TotalNodes={len(mine)}"
        " SelectTypeParameters=NONE",
        "JobDefaults=(null)",
        "DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED",
        f"TRES={tres}",
    ]


def _show(state: State, what: str, args: list[str], one_line: bool) -> None:
    if _is(what, "hostnames", 5):
        text = args[0] if args else os.environ.get("SLURM_JOB_NODELIST", "")
        if not text:
            raise _fail("no hostlist given and SLURM_JOB_NODELIST is not set")
        try:
            names = expand(text)
        except ValueError as exc:
            raise _fail(f"invalid hostlist {text!r}: {exc}") from None
        click.echo("".join(f"{n}\n" for n in names), nl=False)
        return
    if _is(what, "hostlist", 5) or _is(what, "hostlistsorted", 9):
        if not args:
            raise _fail("show hostlist needs a comma-separated list of names")
        try:
            click.echo(compress(n for a in args for n in a.split(",") if n))
        except ValueError as exc:
            raise _fail(str(exc)) from None
        return
    client = state.client()
    if _is(what, "job", 3) or _is(what, "jobid", 3):
        details = _job_details(client, [i for a in args for i in a.split(",") if i])
        now = now_ms()
        text = "".join(render_record(job_record(d, now), one_line) for d in details)
        click.echo(text or "No jobs in the system\n", nl=False)
        return
    if _is(what, "node", 4):
        nodes = client.nodes()
        if args:
            wanted = {n for a in args for n in expand(a)}
            nodes = [n for n in nodes if n.get("nodeId") in wanted]
            missing = wanted - {str(n.get("nodeId")) for n in nodes}
            if missing:
                raise _fail(f"Node {sorted(missing)[0]} not found")
        parts = _partitions_of(client.queues())
        for n in nodes:
            record = node_record(n, parts.get(str(n.get("computeEnvironment")), []))
            click.echo(render_record(record, one_line), nl=False)
        return
    if _is(what, "partition", 4):
        queues = client.queues()
        if args:
            queues = [q for q in queues if q.get("jobQueueName") in args]
            if not queues:
                raise _fail(f"Partition {args[0]} not found")
        nodes = client.nodes()
        for q in queues:
            click.echo(render_record(_partition_record(q, nodes), one_line), nl=False)
        return
    raise _fail(
        f"show {what}: not supported by mnp (job, node, partition, hostnames, hostlist are)"
    )


def _each_job(state: State, verb: str, args: list[str]) -> None:
    """``requeue|hold|uhold|release JOBLIST``: the verb applied to each job of the list.

    requeue: each running job (an array: its running tasks) is stopped and goes back to its
    queue with the same id, as Slurm does; one not started yet stays queued. hold: a job not
    started waits PENDING (JobHeldUser) until released; release: it goes on."""
    ids = [i for a in args for i in a.split(",") if i]
    if not ids:
        raise _fail(f"{verb}: which job? (scontrol {verb} <job_id>[,<job_id>...])")
    client = state.client()
    calls: dict[str, Callable[[str], None]] = {
        "requeue": partial(client.requeue, reason="scontrol requeue"),
        "hold": client.hold, "uhold": client.hold, "release": client.release,
    }  # fmt: skip
    call = calls[verb]
    failed = False
    for given, mnp_id in zip(ids, resolve_task_ids(client, ids), strict=True):
        try:
            call(mnp_id)
        except MnpError as exc:
            click.echo(f"{verb.capitalize()} of JobId={given} failed: {exc}", err=True)
            failed = True
    if failed:
        raise click.exceptions.Exit(1)


UPDATABLE = ("TimeLimit", "Priority", "ArrayTaskThrottle")
"""What ``scontrol update JobId=…`` changes of a job that has not finished."""


def _update(state: State, args: list[str]) -> None:
    """``update JobId=N Field=value ...``: the time limit, priority (the job's scheduling
    priority, 0-9999) and an array's task throttle of a job that has not finished; any other
    field is refused, naming it."""
    pairs = [a.partition("=") for a in args]
    ids = [v for k, _, v in pairs if k.lower() in ("jobid", "job")]
    if not ids:
        raise _fail("update: only JobId=<id> updates are understood by mnp")
    body: dict[str, Any] = {}
    for key, _, value in pairs:
        k = key.lower()
        try:
            if k in ("jobid", "job"):
                continue
            if k == "timelimit":
                body["timeout"] = {"attemptDurationSeconds": parse_time(value)}
            elif k in ("priority", "nice"):
                if k == "nice":
                    raise ValueError("use Priority=N (mnp's scheduling priority, 0-9999)")
                body["schedulingPriority"] = int(value)
            elif k == "arraytaskthrottle":
                body["arrayMaxRunning"] = int(value)
            else:
                raise ValueError(f"mnp cannot change {key} of a submitted job (it changes "
                                 f"{', '.join(UPDATABLE)}; scancel it and submit again)")
        except ValueError as exc:
            raise _fail(f"update {key}: {exc}") from None
    if not body:
        raise _fail("update: no field to change")
    client = state.client()
    failed = False
    for given, mnp_id in zip(ids, resolve_task_ids(client, ids), strict=True):
        try:
            client.call("updateJob", {"jobId": mnp_id, **body})
        except MnpError as exc:
            click.echo(f"Update of JobId={given} failed: {exc}", err=True)
            failed = True
    if failed:
        raise click.exceptions.Exit(1)


@click.command(
    "scontrol",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["--help"],
    },
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="[-o] COMMAND [ARGS]...")
@click.pass_obj
def scontrol_command(state: State, argv: tuple[str, ...]) -> None:
    """Slurm's scontrol, the parts that map: show job [ID] | node [NAME] | partition [NAME]
    | hostnames [LIST] | hostlist NAMES; requeue | hold | uhold | release JOBLIST;
    update JobId=ID TimeLimit=T Priority=N ArrayTaskThrottle=N.

    -o/--oneliner prints each record on one line. `show hostnames` defaults to
    $SLURM_JOB_NODELIST and, with `show hostlist`, needs no head node.
    """
    words, one_line = _split_options(argv)
    if not words:
        raise click.UsageError("no command given (show, requeue, hold, release, update)")
    verb, args = words[0].lower(), words[1:]
    if _is(verb, "show", 2):
        if not args:
            raise _fail("show: what to show? (job, node, partition, hostnames, hostlist)")
        _show(state, args[0], args[1:], one_line)
    elif verb in ("requeue", "hold", "uhold", "release"):
        _each_job(state, verb, args)
    elif verb in UNSUPPORTED:
        raise _fail(f"{verb}: {UNSUPPORTED[verb]}")
    elif _is(verb, "update", 2):
        _update(state, args)
    else:
        raise _fail(
            f"{verb}: not supported by mnp (show, requeue, hold, uhold, release, update are)"
        )
