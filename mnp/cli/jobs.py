"""The job verbs of ``mnp``: register, submit, jobs, describe, logs, cancel, terminate.

Each is a thin layer over :class:`mnp.client.client.Client`; ``--json`` prints the head's
answers as they are. The group (:mod:`mnp.cli.main`) adds them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from mnp.cli.render import WaitProgress, job_view, jobs_table, wide_console
from mnp.cli.state import State, json_option, pass_state, print_json, read_json
from mnp.client.client import Client
from mnp.client.jobspec import (
    JobSpecFile,
    load_jobspec,
    resolve_definition_paths,
    resolve_submit_paths,
    submit_jobspec,
)
from mnp.client.run import Run
from mnp.client.run import submit as submit_specs
from mnp.errors import InvalidInput
from mnp.spec import DEFAULT_QUEUE

JSON = dict[str, Any]
STARTED_STATES = ("STARTING", "RUNNING")


@click.command()
@click.argument("file", metavar="FILE.json")
@json_option
@pass_state
def register(state: State, file: str, as_json: bool) -> None:
    """Register a job definition from JSON (- for stdin).

    FILE is a RegisterJobDefinition request, as `aws batch register-job-definition
    --cli-input-json` takes.

    Relative script paths in the command that name existing files (relative to the current
    directory) are made absolute, since jobs run in their own working directories.
    """
    defn = read_json(file)
    if not isinstance(defn, dict):
        raise InvalidInput(f"{file}: must be a JSON object (RegisterJobDefinition)")
    answer = state.client().register_job_definition(resolve_definition_paths(defn, Path.cwd()))
    if as_json:
        print_json(answer)
    else:
        name, rev = answer.get("jobDefinitionName"), answer.get("revision")
        click.echo(f"registered {name}:{rev} ({answer.get('jobDefinitionArn')})")


@click.command()
@click.argument("file")
@click.option("--queue", help="Submit to this job queue (overrides the file).")
@click.option("--name", help="Job name (overrides the file; one job only).")
@click.option("--wait", is_flag=True, help="Wait for every job; exit 1 unless all SUCCEEDED.")
@click.option("--follow", "-f", is_flag=True,
              help="Wait, streaming every job's output; exit 1 naming failed jobs.")  # fmt: skip
@click.option("--idempotency-token", "token", metavar="TOKEN",
              help="Submit once: rerun with the same TOKEN (1-64 printable ASCII) within 24 h "
                   "and get the same job, not a second one. One JSON/dict job only. "
                   "Default: a fresh token, so retries of this invocation are safe.")  # fmt: skip
@json_option
@click.pass_context
def submit(
    ctx: click.Context,
    file: str,
    queue: str | None,
    name: str | None,
    wait: bool,
    follow: bool,
    token: str | None,
    as_json: bool,
) -> None:
    """Submit jobs from a .json or .py file; print their ids.

    FILE is a SubmitJob request (as `aws batch submit-job --cli-input-json` takes; - for
    stdin) or a Python job-spec file defining JOB or JOBS (and optionally JOB_DEFINITIONS):
    dicts in SubmitJob shape, or mnp.Job / ArrayJob / MpiJob objects (see README.md).

    Relative script paths in commands are made absolute (see `mnp register --help`).
    """
    state: State = ctx.obj
    client = state.client()
    submitted = submit_file(client, file, queue, name, token)
    if follow:
        follow_run(client, submitted)
    elif not wait:
        print_submitted(submitted, as_json)
    elif not wait_and_print(client, submitted, as_json):
        ctx.exit(1)


def submit_file(
    client: Client, file: str, queue: str | None, name: str | None, token: str | None = None
) -> list[tuple[str, str]]:
    """Submit what ``file`` holds (a ``.py`` job-spec file of Python API specs or of dicts, else
    one SubmitJob JSON document) with ``--queue``/``--name`` applied; ``[(jobName, jobId)]`` in
    submission order. ``--name`` with several jobs is a usage error; so is ``token``
    (``--idempotency-token``) with several jobs or with Python API specs, which register a new
    definition revision each run (so a rerun would be a different request)."""
    overrides = {k: v for k, v in (("jobQueue", queue), ("jobName", name)) if v}
    spec = load_jobspec(file) if file.endswith(".py") else None
    if spec is not None and spec.specs:
        if token is not None:
            raise click.UsageError(
                "--idempotency-token needs a SubmitJob JSON file or one dict job; "
                f"{file} defines Python API specs"
            )
        return submit_objects(client, spec, queue, name)
    if spec is not None:
        if name is not None and len(spec.jobs) != 1:
            raise click.UsageError(f"--name needs a single job; {file} defines {len(spec.jobs)}")
        if token is not None and len(spec.jobs) != 1:
            raise click.UsageError(
                f"--idempotency-token needs a single job; {file} defines {len(spec.jobs)}"
            )
        spec = replace(
            spec,
            jobs=[
                resolve_submit_paths(with_token(dict(j, **overrides), token), Path.cwd())
                for j in spec.jobs
            ],
            job_definitions=[resolve_definition_paths(d, Path.cwd()) for d in spec.job_definitions],
        )
        return submit_jobspec(client, spec)
    body = read_json(file)
    if not isinstance(body, dict):
        raise InvalidInput(f"{file}: must be a JSON object (SubmitJob)")
    body = dict(resolve_submit_paths(body, Path.cwd()), **overrides)
    body.setdefault("jobQueue", DEFAULT_QUEUE)
    return [(str(body.get("jobName")), client.submit(body, idempotency_token=token))]


def with_token(body: JSON, token: str | None) -> JSON:
    """``body`` with ``mnp.idempotencyToken`` set to ``token`` (unchanged without one)."""
    if token is None:
        return body
    extras = body.get("mnp", {})
    if not isinstance(extras, dict):
        return body  # the head refuses a malformed block, naming it
    return {**body, "mnp": {**extras, "idempotencyToken": token}}


def print_submitted(submitted: list[tuple[str, str]], as_json: bool) -> None:
    """The ids (one job: the id alone; several: ``name<TAB>id`` lines), or the JSON rows."""
    if as_json:
        print_json([{"jobName": n, "jobId": j} for n, j in submitted])
        return
    for n, j in submitted:
        click.echo(j if len(submitted) == 1 else f"{n}\t{j}")


def wait_and_print(client: Client, submitted: list[tuple[str, str]], as_json: bool) -> bool:
    """Wait for every job (progress on stderr), print each one's final status; True when all
    SUCCEEDED."""
    names = {j: n for n, j in submitted}
    with WaitProgress(Console(stderr=True), names) as progress:
        final = client.wait([j for _, j in submitted], on_progress=progress)
    rows: list[JSON] = [{"jobName": n, "jobId": j, "status": final[j]} for n, j in submitted]
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            click.echo(f"{row['jobName']}\t{row['jobId']}\t{row['status']}")
    return all(s == "SUCCEEDED" for s in final.values())


def submit_objects(
    client: Client, spec: JobSpecFile, queue: str | None, name: str | None
) -> list[tuple[str, str]]:
    """Submit a job-spec file's Python API specs (see :func:`mnp.client.run.submit`) after its
    JOB_DEFINITIONS; ``[(jobName, jobId)]`` in submission order."""
    if name is not None and len(spec.specs) != 1:
        raise click.UsageError(f"--name needs a single job; {spec.path} defines {len(spec.specs)}")
    specs = [replace(spec.specs[0], name=name)] if name is not None else spec.specs
    for defn in spec.job_definitions:
        client.register_job_definition(resolve_definition_paths(defn, Path.cwd()))
    return list(submit_specs(specs, client, queue=queue, base_dir=Path.cwd()).ids.items())


def follow_run(client: Client, submitted: list[tuple[str, str]]) -> None:
    """Stream the output of the submitted jobs until they end; say each one's final status on
    stderr. A failed job raises :class:`mnp.client.run.JobFailed` (exit status 1, naming it)."""
    labels: dict[str, str] = {}
    for n, j in submitted:  # dict files may repeat a name; the label must tell them apart
        labels[f"{n}({j})" if n in labels else n] = j
    run = Run(client, labels)
    try:
        final = run.wait(stream=True)
    except KeyboardInterrupt:
        click.echo("mnp: stopped following; the jobs keep running (mnp cancel/terminate)", err=True)
        raise click.exceptions.Exit(130) from None
    for label, status in final.items():
        click.echo(f"mnp: {label} {labels[label]} {status}", err=True)


@click.command()
@click.option("--queue", help="Only this queue (default: every queue).")
@click.option("--state", "states", multiple=True, help="Only this status (repeatable).")
@click.option("--name", help="Job-name filter (case-insensitive; trailing * = prefix).")
@click.option("--array", "array_id", metavar="JOBID", help="List this array job's children.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0),
              help="At most this many (0: all).")  # fmt: skip
@json_option
@pass_state
def jobs(
    state: State,
    queue: str | None,
    states: tuple[str, ...],
    name: str | None,
    array_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first (every state unless --state)."""
    items = state.client().list_jobs(
        queue=queue,
        status=[s.upper() for s in states] or None,
        name=name,
        array_job_id=array_id,
        limit=limit or None,
    )
    print_json(items) if as_json else wide_console().print(jobs_table(items))


@click.command()
@click.argument("job_id", metavar="JOBID")
@json_option
@pass_state
def describe(state: State, job_id: str, as_json: bool) -> None:
    """Show one job: summary, attempts, history.

    --json prints the full JobDetail.
    """
    detail = state.client().describe(job_id)
    print_json(detail) if as_json else wide_console().print(job_view(detail))


@click.command()
@click.argument("job_id", metavar="JOBID")
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: latest).")
@click.option("--follow", "-f", is_flag=True, help="Stream until the job finishes.")
@pass_state
def logs(state: State, job_id: str, attempt: int | None, follow: bool) -> None:
    """Print a job's output (stdout, then stderr)."""
    for line in state.client().logs(job_id, attempt=attempt, follow=follow):
        click.echo(line, nl=False)


@click.command()
@click.argument("job_id", metavar="JOBID")
@click.option("--reason", default="Cancelled by user", show_default=True)
@pass_state
def cancel(state: State, job_id: str, reason: str) -> None:
    """Cancel a job that has not started.

    Jobs already STARTING or RUNNING keep running, as in AWS Batch; use `mnp terminate`.
    """
    client = state.client()
    client.cancel(job_id, reason)
    click.echo(f"cancel requested for {job_id}")
    status = client.describe(job_id).get("status")
    if status in STARTED_STATES:
        click.echo(
            f"note: {job_id} is {status}; cancel does not stop a started job "
            f"(as in AWS Batch): use `mnp terminate {job_id}`",
            err=True,
        )


@click.command()
@click.argument("job_id", metavar="JOBID")
@click.option("--reason", default="Terminated by user", show_default=True)
@pass_state
def terminate(state: State, job_id: str, reason: str) -> None:
    """Terminate a job in any state; running attempts are killed."""
    state.client().terminate(job_id, reason)
    click.echo(f"terminate requested for {job_id}")
