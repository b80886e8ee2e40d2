"""``mnp sbatch``: submit a batch script as sbatch does (the pure part: :mod:`mnp.slurm.sbatch`).

``mnp sbatch [OPTIONS] SCRIPT [ARGS…]`` reads the script's ``#SBATCH``/``#MNP`` lines, lets
the command line override them, checks them against the partition (``-p``: a job queue) as
Slurm does at submit (an unknown partition, a job its nodes can never run: refused in
sbatch's words, exit 1), registers a job definition, submits the job and prints
``Submitted batch job <id>`` (``--parsable``: the id alone). Warnings go to stderr (``-Q``
silences them); bad values exit 1 naming every problem; unknown options are usage errors
(exit 2). ``--wrap CMD`` submits ``CMD`` as a ``/bin/sh`` script; with no script, the script
is read from standard input (as sbatch does).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mnp.cli.run import exit_status
from mnp.cli.state import State
from mnp.client.client import Client
from mnp.errors import FieldError, NotFound
from mnp.slurm.options import MNP_OPTIONS, SBATCH_OPTIONS, Parsed, help_text, parse_tokens
from mnp.slurm.request import (
    INVALID_PARTITION,
    NOT_AVAILABLE,
    fit_problems,
    partition_from,
    placed,
)
from mnp.slurm.sbatch import (
    ARRAY_IDS_VAR,
    SbatchError,
    SbatchRequest,
    build_requests,
    check_script,
    dry_run_text,
    request_from,
    wrap_script,
)
from mnp.slurm.taskids import expand_ids

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CommandLine:
    parsed: Parsed
    script: str | None
    """The script's path as given; None when there is none (``--wrap`` or standard input)."""
    args: tuple[str, ...]

    def value(self, key: str) -> str | None:
        found = [s.value for s in self.parsed.settings if s.key == key]
        return found[-1] if found else None


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Options up to the script, then the script and its arguments (as sbatch reads them).
    Raises click.UsageError naming every unknown option and every option missing its value."""
    parsed, i = parse_tokens(
        argv, (*SBATCH_OPTIONS, *MNP_OPTIONS), "command line", stop_at_positional=True
    )
    problems = [f"unknown option {u}" for u in parsed.unknown] + parsed.malformed
    if problems:
        raise click.UsageError(f"{', '.join(problems)} (mnp sbatch --help)")
    rest = list(argv[i:])
    return CommandLine(parsed, rest[0] if rest else None, tuple(rest[1:]))


def read_script(cl: CommandLine) -> tuple[str, str]:
    """``(script text, script name)`` from ``--wrap``, the file, or standard input."""
    wrap = cl.value("wrap")
    if wrap is not None:
        if cl.script is not None:
            raise click.UsageError(f"--wrap takes no script or arguments (got {cl.script!r})")
        return wrap_script(wrap), "wrap"
    if cl.script is None or cl.script == "-":
        stdin = click.get_text_stream("stdin")
        if cl.script is None and stdin.isatty():
            raise click.UsageError("no batch script: give a script file, --wrap CMD, or pipe one")
        return stdin.read(), "sbatch"
    try:
        data = Path(cl.script).read_bytes()
    except OSError as exc:
        raise SbatchError([FieldError(cl.script, f"cannot read: {exc.strerror}")]) from None
    try:
        return data.decode(), cl.script
    except UnicodeDecodeError:
        raise SbatchError([FieldError(cl.script, "not a text (UTF-8) script")]) from None


def array_task_ids(client: Client, req: SbatchRequest) -> dict[str, list[int]]:
    """The Slurm task ids of each array job named as ``JOB_TASK`` in ``--dependency`` whose
    ids are not ``0..n-1`` (from its ``MNP_SLURM_ARRAY_TASK_IDS``)."""
    out: dict[str, list[int]] = {}
    jobs = {
        d.job_id for d in (req.dependency.items if req.dependency else ()) if d.task is not None
    }
    for job in sorted(jobs):
        try:
            detail = client.describe(job)
        except NotFound:
            continue  # the head names unknown dependencies itself
        for kv in (detail.get("container") or {}).get("environment") or []:
            if kv.get("name") == ARRAY_IDS_VAR:
                out[job] = expand_ids(str(kv.get("value", "")))
    return out


def _refuse(ctx: click.Context, lines: Sequence[str], reason: str) -> None:
    """Refuse the submission in sbatch's words (its tools match them), exit 1."""
    for line in lines:
        click.echo(f"sbatch: error: {line}", err=True)
    click.echo(f"sbatch: error: Batch job submission failed: {reason}", err=True)
    ctx.exit(1)


def on_partition(ctx: click.Context, client: Client, req: SbatchRequest) -> SbatchRequest:
    """What Slurm checks against the partition at submit: that it exists, the node count
    ``-n`` needs there when ``-N`` is absent, and that its nodes can ever run the job (else
    it would pend forever); refuses in sbatch's words naming the limit."""
    names = (req.partition,)
    queue = next(
        (q for q in client.queues() if {q.get("jobQueueName"), q.get("jobQueueArn")} & {*names}),
        None,
    )
    if queue is None:
        _refuse(ctx, [f"invalid partition specified: {req.partition}"], INVALID_PARTITION)
        return req
    part = partition_from(queue, client.compute_environments())
    req = placed(req, part)
    problems = fit_problems(req, part)
    if problems:
        _refuse(ctx, problems, NOT_AVAILABLE)
    return req


def slurm_id(client: Client, job_id: str) -> str:
    """The id sbatch prints: the job's number (Slurm's integer id, which tools parse), or
    ``job_id`` from a head that does not number jobs."""
    number = client.describe(job_id).get("jobNumber")
    return str(number) if isinstance(number, int) else job_id


def _epilog() -> str:
    return "\b\n" + help_text().replace("\n\n", "\n\n\b\n")


@click.command(
    "sbatch",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["-h", "--help"],
    },
    epilog=_epilog(),
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.pass_context
def sbatch_command(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """Submit a batch script, like sbatch: #SBATCH lines (and #MNP for mnp's own options)
    before the first command, command-line options overriding them.

    Prints "Submitted batch job <id>" (--parsable: the id alone). Several nodes make a
    multi-node parallel job whose main node runs the script. See docs/sbatch.md.
    """
    state: State = ctx.obj
    cl = parse_command_line(argv)
    text, name = read_script(cl)
    check_script(text, name)
    req, warnings = request_from(text, cl.parsed, os.environ)
    if not req.quiet:
        for w in warnings:
            click.echo(f"mnp sbatch: warning: {w}", err=True)
    client = None if req.dry_run else state.client()
    if client is not None:
        req = on_partition(ctx, client, req)
    defn, sub = build_requests(
        req, script_text=text, script_name=name, script_args=cl.args, submit_dir=os.getcwd(),
        environ=os.environ, user=getpass.getuser(),
        array_task_ids=array_task_ids(client, req) if client is not None else None,
    )  # fmt: skip
    if client is None:
        click.echo(dry_run_text(defn, sub), nl=False)
        return
    answer = client.register_job_definition(defn)
    sub["jobDefinition"] = f"{answer['jobDefinitionName']}:{answer['revision']}"
    job_id = client.submit(sub)
    shown = slurm_id(client, job_id)
    click.echo(shown if req.parsable else f"Submitted batch job {shown}")
    sys.stdout.flush()
    if req.wait:
        status = client.wait([job_id])[job_id]
        detail = client.describe(job_id)
        code = (detail.get("container") or {}).get("exitCode")
        ctx.exit(exit_status(status, code if isinstance(code, int) else None))
