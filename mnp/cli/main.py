"""The ``mnp`` command line: a thin layer over :class:`mnp.Client`.

Tables are for people (rich); ``--json`` prints the head's answers for scripts. Every
:class:`mnp.errors.MnpError` becomes ``error: <message>`` on stderr (one line per bad field)
and exit status 1; usage errors exit 2, as click does (:mod:`mnp.cli.state`).

This module is the group and the head-control verbs (up, down, status, the cluster listings,
demo); the job verbs are :mod:`mnp.cli.jobs`, ``run``/``mpirun`` :mod:`mnp.cli.run` and the
Slurm-style verbs their own modules.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import NoReturn

import click

from mnp import __version__
from mnp.cli.admin import ce_group, queue_group
from mnp.cli.commands import salloc_command, slurm_group
from mnp.cli.env import env_command
from mnp.cli.events import events_group
from mnp.cli.head import UpOptions, head_pid, running_head, start_background, stop_pid
from mnp.cli.hosts import hosts_group
from mnp.cli.jobs import cancel, describe, jobs, logs, register, submit, terminate
from mnp.cli.render import ces_table, nodes_table, queues_table, status_view, wide_console
from mnp.cli.roles import roles_group
from mnp.cli.run import mpirun_command, run_command
from mnp.cli.sacct import sacct_command
from mnp.cli.sbatch import sbatch_command
from mnp.cli.scontrol import scontrol_command
from mnp.cli.shares import shares_command
from mnp.cli.sinfo import sinfo_command
from mnp.cli.squeue import scancel_command, squeue_command
from mnp.cli.state import MnpGroup, State, json_option, pass_state, print_json
from mnp.cli.users import users_group, whoami_command
from mnp.cli.why import why_command
from mnp.config import STOP_NODES_SIGNAL, default_home
from mnp.errors import MnpError


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

    Runs in the foreground until SIGTERM/SIGINT unless --background; the local nodes (and
    their jobs) outlive it, and the next `mnp up` on this home adopts them (see `mnp down`).
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
    from mnp.head import run

    state.home.mkdir(parents=True, exist_ok=True)
    click.echo(f"mnp head node on http://{host}:{port}, home {state.home}", err=True)
    run(options.config(state.home))


@cli.command()
@click.option(
    "--stop-nodes", is_flag=True, help="Also stop the local nodes (their running jobs fail)."
)
@pass_state
def down(state: State, stop_nodes: bool) -> None:
    """Stop the head node of this home; its nodes and their jobs keep running.

    Sends SIGTERM to the pid in <home>/head.pid and waits up to 30 s for it to exit. The next
    `mnp up` on this home (any port) adopts the nodes: jobs that were running carry on. With
    --stop-nodes the head stops every node first (SIGUSR1 instead of SIGTERM).
    """
    pid = head_pid(state.home)
    if pid is None:
        click.echo(f"no head node is running for {state.home}")
        if stop_nodes:  # only a head knows its nodes: a detached one's are stopped through it
            click.echo("nodes an earlier head left running: `mnp up`, then `mnp down --stop-nodes`")
        return
    sig = STOP_NODES_SIGNAL if stop_nodes else signal.SIGTERM
    if not stop_pid(pid, sig=sig):
        raise MnpError(f"head node (pid {pid}) did not exit within 30 s; `kill -9 {pid}` forces it")
    rest = " and its nodes" if stop_nodes else "; its nodes keep running their jobs"
    click.echo(f"stopped the head node (pid {pid}){rest}")


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


for command in (
    register, submit, jobs, describe, logs, cancel, terminate,  # mnp.cli.jobs
    run_command, mpirun_command, env_command,
    squeue_command, scancel_command, sacct_command, sbatch_command,
    scontrol_command, sinfo_command, salloc_command, slurm_group,  # mnp.cli.commands & co
    users_group, whoami_command,  # mnp.cli.users
    hosts_group,  # mnp.cli.hosts
    queue_group, ce_group,  # mnp.cli.admin
    shares_command,  # mnp.cli.shares
    why_command,  # mnp.cli.why
    roles_group,  # mnp.cli.roles
    events_group,  # mnp.cli.events
):  # fmt: skip
    cli.add_command(command)


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
