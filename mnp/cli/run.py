"""``mnp run`` (srun-like) and ``mnp mpirun``: submit one command as a job and stay attached.

Three layouts, chosen from the options (:func:`run_options`):

- ``SINGLE``: one node, no MPI: a plain container job;
- ``MPI``: an MNP job whose main node (0) runs the command, under ``mpiexec`` unless
  ``--mpi none``; the other nodes run nothing themselves and serve SSH for the launcher;
- ``EVERY_NODE``: an MNP job running the command on every node (torchrun style).

The submission is built by pure functions (:func:`build_definition`, :func:`build_submission`;
``--dry-run`` prints them). As Slurm's srun, the job starts in the caller's working directory
(``mnp.workingDirectory``) with the caller's environment (``--export``, default ``ALL``:
``PATH``, ``VIRTUAL_ENV``, ``PYTHONPATH``, exported bash functions…), so a program name or a
relative path means what it means in the caller's shell. Attached (:mod:`mnp.cli.attach`), the
command's output streams live, Ctrl-C, SIGTERM and SIGHUP terminate the job (Ctrl-C twice:
detach) and the exit status is the job's (:func:`exit_status`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import click

from mnp.cli.attach import Interrupts, follow
from mnp.cli.mpihosts import HostsError, mpirun_shape
from mnp.cli.state import State
from mnp.client.client import Client
from mnp.client.jobspec import resolve_command_paths
from mnp.errors import NotFound
from mnp.slurm.sbatch import exported_functions
from mnp.slurm.values import TIME_FORMATS, parse_export_spec, parse_time
from mnp.spec import DEFAULT_QUEUE
from mnp.spec.noderanges import MPI_CHOICES

JSON = dict[str, Any]

FLAVOURS = tuple(m for m in MPI_CHOICES if m != "none")


class Layout(Enum):
    SINGLE = "single"
    """A plain container job on one node."""
    MPI = "mpi"
    """MNP: node 0 runs the command (under mpiexec unless mpi is none); others serve SSH."""
    EVERY_NODE = "every-node"
    """MNP: every node runs the command."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What to submit; everything the builders need and nothing about attaching."""

    command: tuple[str, ...]
    layout: Layout = Layout.SINGLE
    nodes: int = 1
    mpi: str = "none"
    tasks_per_node: int | None = None
    ntasks: int | None = None
    """As asked with ``-n`` (ranks actually started: ``nodes × tasks_per_node``)."""
    cpus: int | None = None
    mem_mib: int | None = None
    time_seconds: int | None = None
    name: str | None = None
    queue: str = DEFAULT_QUEUE
    export: tuple[tuple[str, str], ...] = ()
    """The job's environment (:func:`job_environment`)."""
    workdir: str | None = None
    """Absolute directory the command starts in (the caller's); None: a fresh one per attempt."""

    @property
    def ranks(self) -> int:
        return self.nodes * (self.tasks_per_node or 1)


# -- pure parts: options, builders, exit status (times and exports: mnp.slurm.values) -----------


def default_name(command: Sequence[str]) -> str:
    """``run-<basename of the program>``, with characters outside ``[A-Za-z0-9_-]`` as ``-``
    (a valid job and job-definition name)."""
    base = Path(command[0]).name if command and command[0] else ""
    return ("run-" + re.sub(r"[^A-Za-z0-9_-]", "-", base or "command"))[:128]


def run_options(
    command: Sequence[str],
    *,
    nodes: int | None = None,
    ntasks: int | None = None,
    ntasks_per_node: int | None = None,
    every_node: bool = False,
    mpi: str | None = None,
    cpus: int | None = None,
    mem_mib: int | None = None,
    time_seconds: int | None = None,
    name: str | None = None,
    queue: str = DEFAULT_QUEUE,
    export: tuple[tuple[str, str], ...] = (),
    workdir: str | None = None,
) -> RunOptions:
    """Options of ``mnp run`` → :class:`RunOptions`; click.UsageError for contradictions.

    Nodes default to ``ceil(ntasks / ntasks_per_node)`` when both are given, else 1; tasks per
    node to ``ceil(ntasks / nodes)``. Several nodes, several tasks or ``--mpi`` make an MNP job
    (``--mpi auto`` unless given or ``--every-node``).
    """
    if not command:
        raise click.UsageError("a command is needed: mnp run [OPTIONS] -- command...")
    if every_node and mpi is not None:
        raise click.UsageError("--every-node and --mpi exclude each other")
    if nodes is None:
        nodes = math.ceil(ntasks / ntasks_per_node) if ntasks and ntasks_per_node else 1
    tasks = ntasks_per_node or (math.ceil(ntasks / nodes) if ntasks else None)
    if ntasks and tasks and ntasks > nodes * tasks:
        raise click.UsageError(f"-n {ntasks} is more than {nodes} nodes × {tasks} tasks per node")
    if every_node:
        layout = Layout.EVERY_NODE
    elif mpi is not None or nodes > 1 or (tasks or 1) > 1:
        layout = Layout.MPI
    else:
        layout = Layout.SINGLE
    return RunOptions(
        command=tuple(command),
        layout=layout,
        nodes=nodes,
        mpi=(mpi or "auto") if layout is Layout.MPI else "none",
        tasks_per_node=tasks,
        ntasks=ntasks,
        cpus=cpus,
        mem_mib=mem_mib,
        time_seconds=time_seconds,
        name=name,
        queue=queue,
        export=export,
        workdir=workdir,
    )


def job_environment(
    specs: Sequence[str], environ: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """The job's environment for the ``--export`` values given (joined by ``,``; none: ``ALL``,
    srun's default), as ``mnp sbatch`` reads ``--export``: ``ALL`` sends ``environ`` (less the
    head's own variables) and its exported bash functions, ``NONE`` nothing, ``VAR``/``VAR=value``
    items only those (after ``ALL``: those too). Raises ValueError for a bad item."""
    text = ",".join(specs) or "ALL"
    env = parse_export_spec(text, environ) | exported_functions(text, environ)
    return tuple(sorted(env.items()))


def resolve_program(command: Sequence[str], cwd: Path, environ: Mapping[str, str],
                    export: Sequence[tuple[str, str]]) -> list[str]:  # fmt: skip
    """``command`` with its paths as the caller's shell reads them: relative paths that exist
    made absolute (:func:`resolve_command_paths`), and, when the job gets no ``PATH`` of its
    own (``--export=NONE`` or without ``PATH``), a bare program name found on the caller's
    ``PATH`` (``environ``) replaced by where it is found. With the caller's ``PATH`` exported
    the job's own lookup finds it there, as srun leaves it to the node."""
    out = resolve_command_paths(list(command), cwd)
    if out and out[0] and "/" not in out[0] and "PATH" not in dict(export):
        found = shutil.which(out[0], path=environ.get("PATH", os.defpath))
        if found is not None:
            out[0] = os.path.abspath(found)
    return out


def _container(opts: RunOptions, command: bool) -> JSON:
    out: JSON = {"command": list(opts.command)} if command else {}
    resources = [
        {"type": kind, "value": str(value)}
        for kind, value in (("VCPU", opts.cpus), ("MEMORY", opts.mem_mib))
        if value is not None
    ]
    if resources:
        out["resourceRequirements"] = resources
    if opts.export:
        out["environment"] = [{"name": k, "value": v} for k, v in opts.export]
    return out


def build_definition(opts: RunOptions) -> JSON:
    """The RegisterJobDefinition request for ``opts`` (named :func:`default_name`)."""
    defn: JSON = {"jobDefinitionName": default_name(opts.command)}
    if opts.layout is Layout.SINGLE:
        defn |= {"type": "container", "containerProperties": _container(opts, command=True)}
    else:
        if opts.layout is Layout.EVERY_NODE:
            ranges = [{"targetNodes": "0:", "container": _container(opts, command=True)}]
        else:
            ranges = [{"targetNodes": "0", "container": _container(opts, command=True)}]
            if opts.nodes > 1:
                ranges.append({"targetNodes": "1:", "container": _container(opts, command=False)})
        mnp: JSON = {"mpi": opts.mpi}
        if opts.tasks_per_node is not None:
            mnp["tasksPerNode"] = opts.tasks_per_node
        defn |= {
            "type": "multinode",
            "nodeProperties": {
                "numNodes": opts.nodes, "mainNode": 0, "nodeRangeProperties": ranges, "mnp": mnp,
            },
        }  # fmt: skip
    if opts.time_seconds is not None:
        defn["timeout"] = {"attemptDurationSeconds": opts.time_seconds}
    return defn


def build_submission(opts: RunOptions, definition_name: str) -> JSON:
    """The SubmitJob request; ``definition_name`` is ``name`` or ``name:revision``. The
    working directory goes in ``mnp`` as ``mnp sbatch`` sends it (also ``SLURM_SUBMIT_DIR``)."""
    sub: JSON = {
        "jobName": opts.name or default_name(opts.command),
        "jobQueue": opts.queue,
        "jobDefinition": definition_name,
    }
    if opts.workdir is not None:
        sub["mnp"] = {"workingDirectory": opts.workdir, "submitDir": opts.workdir}
    return sub


def dry_run_text(opts: RunOptions) -> str:
    """What ``--dry-run`` prints: ``{"registerJobDefinition": …, "submitJob": …}``."""
    definition = build_definition(opts)
    submission = build_submission(opts, definition["jobDefinitionName"])
    doc = {"registerJobDefinition": definition, "submitJob": submission}
    return json.dumps(doc, indent=2) + "\n"


def exit_status(status: str, exit_code: int | None) -> int:
    """The CLI's exit status for a finished job: 0 when SUCCEEDED; else the main node's exit
    code when it is one (1-255), else 1 (failed without a code, or with 0: another node)."""
    if status == "SUCCEEDED":
        return 0
    return exit_code if exit_code is not None and 0 < exit_code < 256 else 1


def nodes_text(n: int) -> str:
    return f"{n} node" if n == 1 else f"{n} nodes"


# -- attached (the following itself is mnp.cli.attach) ---------------------------------------


def attach(client: Client, make_client: Callable[[], Client], job_id: str, opts: RunOptions,
           label: bool, interrupts: Interrupts | None = None) -> int:  # fmt: skip
    """Stream the job's output (every node's with EVERY_NODE, else the main node's) until it
    ends; terminate it on Ctrl-C, SIGTERM or SIGHUP. Returns :func:`exit_status` of the main
    node's code, or of the node whose failure stopped it. Call from the main thread."""
    multinode = opts.layout is not Layout.SINGLE
    main_job = f"{job_id}#0" if multinode else job_id
    targets = [f"{job_id}#{i}" for i in range(opts.nodes)] if opts.layout is Layout.EVERY_NODE \
        else [main_job]  # fmt: skip
    status, code = follow(client, make_client, job_id, main_job, targets, label, interrupts)
    if multinode and status != "SUCCEEDED" and code in STOPPED_CODES:
        code = _failed_node_code(client, job_id, opts.nodes, code)
    return exit_status(status, code)


STOPPED_CODES = (None, 128 + 9, 128 + 15)
"""Exit codes of a main node that did not end by itself: stopped (SIGTERM, then SIGKILL) as
the job failed, or never started."""


def _failed_node_code(client: Client, job_id: str, nodes: int, code: int | None) -> int | None:
    """The exit code of the node whose failure ended the job when the main node was only
    stopped because of it (a rank without torch exits 1: that, not the main node's 143)."""
    for i in range(1, nodes):
        try:
            other = (client.describe(f"{job_id}#{i}").get("container") or {}).get("exitCode")
        except NotFound:
            continue
        if isinstance(other, int) and other not in (0, *STOPPED_CODES):
            return other
    return code


# -- the commands --------------------------------------------------------------------------------


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``run`` and ``mpirun`` (applied bottom-up, listed top-down)."""
    options = [
        click.option("-c", "--cpus-per-task", "cpus", type=click.IntRange(min=1), metavar="CPUS",
                     help="vCPUs per node (VCPU resource requirement)."),
        click.option("--mem", "mem_mib", type=click.IntRange(min=1), metavar="MIB",
                     help="Memory per node in MiB (MEMORY resource requirement)."),
        click.option("-t", "--time", "time_seconds", callback=_time, metavar="TIME",
                     help=f"Time limit per attempt: {TIME_FORMATS}."),
        click.option("-J", "--job-name", "name", help="Job name (default run-<program>)."),
        click.option("-p", "--partition", "--queue", "queue", default=DEFAULT_QUEUE,
                     show_default=True, help="Job queue."),
        click.option("--export", multiple=True, metavar="ALL|NONE|[ALL,]VAR[=val],...",
                     help="The job's environment, as srun: ALL (default: this one), NONE, or "
                          "only the variables named (bare VAR: its value here); repeatable."),
        click.option("--label", is_flag=True, help="Prefix each output line with its node."),
        click.option("--no-wait", is_flag=True, help="Print the job id and return."),
        click.option("--dry-run", is_flag=True,
                     help="Print the RegisterJobDefinition and SubmitJob JSON; submit nothing."),
        click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


COMMAND_SETTINGS = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}


@click.command("run", context_settings=COMMAND_SETTINGS)
@click.option("-N", "--nodes", type=click.IntRange(min=1), help="Nodes (default 1).")
@click.option("-n", "--ntasks", type=click.IntRange(min=1), help="Tasks (MPI ranks) in all.")
@click.option("--ntasks-per-node", type=click.IntRange(min=1), help="Tasks per node.")
@click.option("--every-node", is_flag=True, help="Run the command on every node (torchrun).")
@click.option("--mpi", type=click.Choice(MPI_CHOICES), help="Node 0 runs it under this MPI.")
@common_options
@click.pass_context
def run_command(ctx: click.Context, /, nodes: int | None, ntasks: int | None,
                ntasks_per_node: int | None, every_node: bool, mpi: str | None,
                **common: Any) -> None:  # fmt: skip
    """Run a command as a job and stay attached to it, like srun.

    One node: a plain job. Several nodes (-N), tasks (-n) or --mpi: a multi-node parallel
    job: node 0 runs the command under mpiexec (--mpi auto unless given) with the other nodes
    reachable over SSH, or with --every-node every node runs it. Output streams here; the exit
    status is the job's; Ctrl-C terminates the job (twice: detach).
    """
    command, shaping = common.pop("command"), _submission_options(common)
    opts = run_options(
        command, nodes=nodes, ntasks=ntasks, ntasks_per_node=ntasks_per_node,
        every_node=every_node, mpi=mpi, **shaping,
    )  # fmt: skip
    ctx.exit(submit_and_attach(ctx.obj, opts, **common))


@click.command("mpirun", context_settings=COMMAND_SETTINGS)
@click.option("-np", "-n", "np", type=click.IntRange(min=1),
              help="Ranks (required unless -H/--hostfile: then their slots).")  # fmt: skip
@click.option("--npernode", "--ntasks-per-node", "per_node", type=click.IntRange(min=1),
              help="Ranks per node (default 2 when -np > 2, or np / -N).")  # fmt: skip
@click.option("-N", "--nodes", type=click.IntRange(min=1), help="Nodes (default np / npernode).")
@click.option("-H", "--host", "-host", "--hosts", "-hosts", "hosts", multiple=True,
              metavar="HOST[:SLOTS],...", help="Hosts and slots, as mpirun takes them: "
              "they say nodes × tasks per node; mnp chooses the nodes itself.")  # fmt: skip
@click.option("--hostfile", "-hostfile", "--machinefile", "-machinefile", "-f", "hostfile",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Hostfile: `host slots=N`, `host:N` or `host` lines; as -H.")  # fmt: skip
@click.option("--mpi", type=click.Choice(FLAVOURS), default="auto", show_default=True)
@common_options
@click.pass_context
def mpirun_command(ctx: click.Context, /, np: int | None, per_node: int | None, nodes: int | None,
                   hosts: tuple[str, ...], hostfile: Path | None, mpi: str,
                   **common: Any) -> None:  # fmt: skip
    """Run an MPI program across nodes, like mpirun: `mnp run --mpi auto` with mpirun's flags."""
    try:
        shape = mpirun_shape(np, per_node, nodes, hosts, hostfile)
    except HostsError as exc:
        raise click.UsageError(str(exc)) from None
    for note in shape.notes:
        click.echo(f"mnp: note: {note}", err=True)
    command, shaping = common.pop("command"), _submission_options(common)
    opts = run_options(command, nodes=shape.nodes, ntasks=shape.np,
                       ntasks_per_node=shape.tasks_per_node, mpi=mpi, **shaping)  # fmt: skip
    ctx.exit(submit_and_attach(ctx.obj, opts, **common))


def _submission_options(common: dict[str, Any]) -> dict[str, Any]:
    """Pop the options that shape the submission; what is left is about attaching."""
    keys = ("cpus", "mem_mib", "time_seconds", "name", "queue")
    out = {k: common.pop(k) for k in keys}
    try:
        out["export"] = job_environment(common.pop("export"), os.environ)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--export") from None
    return out


def submit_and_attach(state: State, opts: RunOptions, label: bool, no_wait: bool,
                      dry_run: bool) -> int:  # fmt: skip
    """Register, submit and (unless ``no_wait``) attach; the CLI's exit status."""
    opts = _resolved(opts)
    if opts.ntasks is not None and opts.ntasks != opts.ranks:
        click.echo(f"mnp: note: {opts.ranks} ranks ({opts.tasks_per_node} on each of "
                   f"{nodes_text(opts.nodes)}), not {opts.ntasks}", err=True)  # fmt: skip
    if dry_run:
        click.echo(dry_run_text(opts), nl=False)
        return 0
    definition = build_definition(opts)
    client = state.client()
    answer = client.register_job_definition(definition)
    pinned = f"{answer['jobDefinitionName']}:{answer['revision']}"
    if no_wait:
        click.echo(client.submit(build_submission(opts, pinned)))
        return 0
    # the handlers go in before the submit: a SIGTERM while it is under way terminates the
    # job as soon as its id is known, rather than leaving it running unwatched
    interrupts = Interrupts("(being submitted)")
    with interrupts.installed():
        job_id = client.submit(build_submission(opts, pinned))
        click.echo(f"mnp: job {job_id} ({nodes_text(opts.nodes)})", err=True)
        return attach(client, partial(Client, url=state.url, home=state.home), job_id, opts,
                      label, interrupts)  # fmt: skip


def _resolved(opts: RunOptions) -> RunOptions:
    """The caller's working directory as the job's, and the program resolved
    (:func:`resolve_program`)."""
    cwd = os.getcwd()
    command = resolve_program(opts.command, Path(cwd), os.environ, opts.export)
    return replace(opts, command=tuple(command), workdir=opts.workdir or cwd)
