"""The ``mnp`` command line: a thin layer over :class:`mnp.Client`.

Tables are for people (rich); ``--json`` prints the head's answers for scripts. Every
:class:`mnp.errors.MnpError` becomes ``error: <message>`` on stderr (one line per bad field)
and exit status 1; usage errors exit 2, as click does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from mnp import __version__
from mnp.cli.env import env_command
from mnp.cli.head import UpOptions, head_pid, running_head, start_background, stop_pid
from mnp.cli.render import (
    WaitProgress,
    ces_table,
    job_view,
    jobs_table,
    nodes_table,
    queues_table,
    status_view,
    wide_console,
)
from mnp.cli.run import mpirun_command, run_command
from mnp.cli.sacct import sacct_command
from mnp.cli.sbatch import sbatch_command
from mnp.cli.squeue import scancel_command, squeue_command
from mnp.client.client import Client, RequestInvalid
from mnp.client.jobspec import (
    DEFAULT_QUEUE,
    JobSpecError,
    JobSpecFile,
    load_jobspec,
    resolve_definition_paths,
    resolve_submit_paths,
    submit_jobspec,
)
from mnp.client.run import Run
from mnp.client.run import submit as submit_specs
from mnp.config import default_home
from mnp.errors import InvalidInput, MnpError

JSON = dict[str, Any]
STARTED_STATES = ("STARTING", "RUNNING")


@dataclass
class State:
    """What every command gets: where the head is, and one lazily created client."""

    url: str | None
    home: Path
    home_given: bool
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(url=self.url, home=self.home)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def error_lines(exc: BaseException) -> list[str]:
    """``error: <message>``, then one line per field error and per exception note."""
    if isinstance(exc, RequestInvalid | JobSpecError):
        headline = exc.message
    elif isinstance(exc, InvalidInput):
        headline = str(exc.errors[0]) if len(exc.errors) == 1 else "invalid input"
    else:
        headline = str(exc)
    lines = [f"error: {headline}"]
    if isinstance(exc, InvalidInput):
        lines += [f"  {e}" for e in exc.errors if str(e) != headline]
    lines += [f"  {note}" for note in getattr(exc, "__notes__", [])]
    return lines


class MnpGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (MnpError, TimeoutError) as exc:
            for line in error_lines(exc):
                click.echo(line, err=True)
            raise click.exceptions.Exit(1) from None


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def read_json(source: str) -> Any:
    """A JSON document from a file name, or stdin for ``-``; bad JSON is invalid input."""
    try:
        text = click.get_text_stream("stdin").read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not valid JSON: {exc}") from exc


pass_state = click.make_pass_decorator(State)
json_option = click.option("--json", "as_json", is_flag=True, help="Print raw JSON.")


@click.group(cls=MnpGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="MNP_URL", help="Head node URL (default: from <home>/head.json).")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MNP_HOME",
    help="State directory of the head node (env MNP_HOME; default ~/.mnp).",
)
@click.version_option(__version__, prog_name="mnp")
@click.pass_context
def cli(ctx: click.Context, url: str | None, home: Path | None) -> None:
    """mnp: self-hosted batch computing with AWS Batch semantics."""
    state = State(url=url, home=(home or default_home()).expanduser(), home_given=home is not None)
    ctx.obj = state
    ctx.call_on_close(state.close)


def main() -> None:
    """Console-script entry point (``mnp``)."""
    cli(prog_name="mnp")


# -- the head node ---------------------------------------------------------------------------


@cli.command()
@click.option("--port", default=8750, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(min=0),
              help="Local node agents (0: no local compute environment).")  # fmt: skip
@click.option("--vcpus", default=4, show_default=True, type=click.IntRange(min=1),
              help="vCPUs per local node.")  # fmt: skip
@click.option("--memory-mib", default=4096, show_default=True, type=click.IntRange(min=4),
              help="Memory per local node.")  # fmt: skip
@click.option("--background", "-d", is_flag=True, help="Detach; output goes to <home>/head.log.")
@click.option("--lost-after", type=float, metavar="SECONDS", help="Silent node is lost after.")
@click.option("--min-timeout", type=float, metavar="SECONDS", help="Floor for job timeouts.")
@click.option("--kill-grace", type=float, metavar="SECONDS", help="SIGTERM → SIGKILL grace.")
@click.option(
    "--mpi-hang",
    type=float,
    metavar="SECONDS",
    help="Fail a multi-node job this long after one node's MPI process ended while others ran.",
)
@click.option(
    "--submit-rate",
    type=float,
    metavar="PER_SECOND",
    help="Throttle SubmitJob through the AWS API (429 TooManyRequestsException past it).",
)
@pass_state
def up(
    state: State,
    port: int,
    host: str,
    nodes: int,
    vcpus: int,
    memory_mib: int,
    background: bool,
    lost_after: float | None,
    min_timeout: float | None,
    kill_grace: float | None,
    mpi_hang: float | None,
    submit_rate: float | None,
) -> None:
    """Start a head node with local node agents.

    Runs in the foreground until SIGTERM/SIGINT unless --background.
    """
    options = UpOptions(
        host,
        port,
        nodes,
        vcpus,
        memory_mib,
        lost_after,
        min_timeout,
        kill_grace,
        mpi_hang,
        submit_rate,
    )
    info = running_head(state.home)
    if info is not None:
        click.echo(f"a head node is already running for {state.home}: {info.url} (pid {info.pid})")
        return
    if background:
        info, _ = start_background(state.home, options)
        click.echo(f"head node started (pid {info.pid}, home {state.home})", err=True)
        click.echo(info.url)
        return
    from mnp.api.server import run

    state.home.mkdir(parents=True, exist_ok=True)
    click.echo(f"mnp head node on http://{host}:{port}, home {state.home}", err=True)
    run(options.config(state.home))


@cli.command()
@pass_state
def down(state: State) -> None:
    """Stop the head node of this home.

    Sends SIGTERM to the pid in <home>/head.pid and waits up to 30 s for it to exit.
    """
    pid = head_pid(state.home)
    if pid is None:
        click.echo(f"no head node is running for {state.home}")
        return
    if not stop_pid(pid):
        raise MnpError(f"head node (pid {pid}) did not exit within 30 s; `kill -9 {pid}` forces it")
    click.echo(f"stopped the head node (pid {pid})")


@cli.command()
@json_option
@pass_state
def status(state: State, as_json: bool) -> None:
    """Show the head node's status."""
    answer = state.client().status()
    print_json(answer) if as_json else wide_console().print(status_view(answer))


@cli.command()
@json_option
@pass_state
def queues(state: State, as_json: bool) -> None:
    """List job queues."""
    items = state.client().queues()
    print_json(items) if as_json else wide_console().print(queues_table(items))


@cli.command()
@json_option
@pass_state
def ces(state: State, as_json: bool) -> None:
    """List compute environments."""
    items = state.client().compute_environments()
    print_json(items) if as_json else wide_console().print(ces_table(items))


@cli.command()
@json_option
@pass_state
def nodes(state: State, as_json: bool) -> None:
    """List nodes."""
    items = state.client().nodes()
    print_json(items) if as_json else wide_console().print(nodes_table(items))


cli.add_command(run_command)
cli.add_command(mpirun_command)
cli.add_command(env_command)
cli.add_command(squeue_command)
cli.add_command(scancel_command)
cli.add_command(sacct_command)
cli.add_command(sbatch_command)


# -- job definitions and jobs ----------------------------------------------------------------


@cli.command()
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


@cli.command()
@click.argument("file")
@click.option("--queue", help="Submit to this job queue (overrides the file).")
@click.option("--name", help="Job name (overrides the file; one job only).")
@click.option("--wait", is_flag=True, help="Wait for every job; exit 1 unless all SUCCEEDED.")
@click.option("--follow", "-f", is_flag=True,
              help="Wait, streaming every job's output; exit 1 naming failed jobs.")  # fmt: skip
@json_option
@click.pass_context
def submit(
    ctx: click.Context,
    file: str,
    queue: str | None,
    name: str | None,
    wait: bool,
    follow: bool,
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
    overrides = {k: v for k, v in (("jobQueue", queue), ("jobName", name)) if v}
    spec = load_jobspec(file) if file.endswith(".py") else None
    if spec is not None and spec.specs:
        submitted = submit_objects(client, spec, queue, name)
    elif spec is not None:
        if name is not None and len(spec.jobs) != 1:
            raise click.UsageError(f"--name needs a single job; {file} defines {len(spec.jobs)}")
        spec = replace(
            spec,
            jobs=[resolve_submit_paths(dict(j, **overrides), Path.cwd()) for j in spec.jobs],
            job_definitions=[resolve_definition_paths(d, Path.cwd()) for d in spec.job_definitions],
        )
        submitted = submit_jobspec(client, spec)
    else:
        body = read_json(file)
        if not isinstance(body, dict):
            raise InvalidInput(f"{file}: must be a JSON object (SubmitJob)")
        body = dict(resolve_submit_paths(body, Path.cwd()), **overrides)
        body.setdefault("jobQueue", DEFAULT_QUEUE)
        submitted = [(str(body.get("jobName")), client.submit(body))]
    rows: list[JSON] = [{"jobName": n, "jobId": j} for n, j in submitted]
    if follow:
        follow_run(client, submitted)
        return
    if not wait:
        if as_json:
            print_json(rows)
        else:
            for n, j in submitted:
                click.echo(j if len(submitted) == 1 else f"{n}\t{j}")
        return
    names = {j: n for n, j in submitted}
    with WaitProgress(Console(stderr=True), names) as progress:
        final = client.wait([j for _, j in submitted], on_progress=progress)
    for row in rows:
        row["status"] = final[row["jobId"]]
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            click.echo(f"{row['jobName']}\t{row['jobId']}\t{row['status']}")
    if any(s != "SUCCEEDED" for s in final.values()):
        ctx.exit(1)


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


@cli.command()
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


@cli.command()
@click.argument("job_id", metavar="JOBID")
@json_option
@pass_state
def describe(state: State, job_id: str, as_json: bool) -> None:
    """Show one job: summary, attempts, history.

    --json prints the full JobDetail.
    """
    detail = state.client().describe(job_id)
    print_json(detail) if as_json else wide_console().print(job_view(detail))


@cli.command()
@click.argument("job_id", metavar="JOBID")
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: latest).")
@click.option("--follow", "-f", is_flag=True, help="Stream until the job finishes.")
@pass_state
def logs(state: State, job_id: str, attempt: int | None, follow: bool) -> None:
    """Print a job's output (stdout, then stderr)."""
    for line in state.client().logs(job_id, attempt=attempt, follow=follow):
        click.echo(line, nl=False)


@cli.command()
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


@cli.command()
@click.argument("job_id", metavar="JOBID")
@click.option("--reason", default="Terminated by user", show_default=True)
@pass_state
def terminate(state: State, job_id: str, reason: str) -> None:
    """Terminate a job in any state; running attempts are killed."""
    state.client().terminate(job_id, reason)
    click.echo(f"terminate requested for {job_id}")


@cli.command()
@click.option("--nodes", default=4, show_default=True, type=click.IntRange(min=1))
@click.pass_context
def demo(ctx: click.Context, nodes: int) -> NoReturn:
    """Run the examples and show where each job ran.

    Starts a head node on a temporary home (unless --home names a running one), submits
    examples/submit-hello.json and examples/pipeline.py, waits, prints every job and array
    child, then (on a head node it started, with MPI installed) runs
    examples/mpi_allreduce.py on up to 4 nodes × 2 ranks under MPICH and shows where each
    rank ran, and stops the head node it started. Exit 0 only if everything SUCCEEDED.
    """
    from mnp.cli.demo import run_demo

    state: State = ctx.obj
    home = state.home if state.home_given else None
    ctx.exit(run_demo(nodes=nodes, home=home, console=wide_console()))
