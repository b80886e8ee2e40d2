"""``mnp demo``: the examples end to end on a head node, then a table of where everything ran.

It starts a head node on a fresh temporary home (unless ``home`` already has one running),
registers ``examples/jobdef-hello.json``, submits ``examples/submit-hello.json`` (a standard
job) and ``examples/pipeline.py`` (an array job of 6 and a job depending on it), waits, and
prints every job and array child with its node, attempts, exit code, duration and first
line of output. Then, when MPI is installed (``pip install -e '.[mpi]'``), it runs
``examples/mpi_allreduce.py`` as a multi-node parallel job under MPICH (up to 4 nodes × 2
ranks, built as ``mnp run --mpi mpich`` builds it) and shows on which node each rank ran.
The head node it started is always stopped, by PID, with its nodes (nothing is left running).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnp.cli.head import UpOptions, running_head, start_background, stop_process
from mnp.cli.render import WaitProgress, fmt_duration, new_table, styled, summary_counts
from mnp.cli.run import RunOptions, build_definition, build_submission, run_options
from mnp.client.client import Client
from mnp.client.jobspec import (
    load_jobspec,
    resolve_definition_paths,
    resolve_submit_paths,
    submit_jobspec,
)
from mnp.errors import MnpError

JSON = dict[str, Any]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WAIT_DEADLINE = 300.0
MPI_NAME = "mpi-allreduce"
MPI_MAX_NODES = 4
MPI_TASKS_PER_NODE = 2
RANK_LINE = re.compile(r"^rank=(\d+) size=(\d+) node=(\S+) ok=(True|False)$", re.M)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the demo's result table."""

    job_id: str
    name: str
    status: str
    node: str
    attempts: str
    exit_code: str
    duration: str
    output: str
    started_at: int | None
    stopped_at: int | None


def run_demo(nodes: int, home: Path | None, console: Console) -> int:
    """Run the demo; 0 when every job and array child SUCCEEDED (and the dependency held),
    and the MPI job, when it ran, SUCCEEDED with every rank's sum right on distinct nodes.

    ``home`` None means a fresh temporary home, removed afterwards when all went well.
    """
    if not (EXAMPLES / "pipeline.py").is_file():
        raise MnpError(f"the examples are not at {EXAMPLES}; run the demo from a source checkout")
    temporary = home is None
    home = home if home is not None else Path(tempfile.mkdtemp(prefix="mnp-demo-"))
    proc: subprocess.Popen[bytes] | None = None
    mpi: MpiResult | None = None
    ok = False
    try:
        info = running_head(home)
        if info is not None:
            console.print(f"using the head node already running at {info.url} (pid {info.pid})")
        else:
            console.print(f"starting a head node with {nodes} local nodes (home {home})")
            info, proc = start_background(home, UpOptions(port=0, nodes=nodes))
            console.print(f"head node at {info.url} (pid {info.pid})")
        with Client(url=info.url, token=info.token, home=home) as client:
            top = submit_examples(client, console)
            with WaitProgress(console, {j: n for n, j in top}) as progress:
                client.wait([j for _, j in top], timeout=WAIT_DEADLINE, on_progress=progress)
            rows = collect_rows(client, [j for _, j in top])
            if proc is not None:
                mpi = run_mpi_example(client, console, nodes)
            else:
                console.print(
                    "skipping the MPI example: it needs idle local nodes of a head node the "
                    "demo starts itself (leave out --home, or name a home without a head)"
                )
        console.print(rows_table(rows + ([mpi.row] if mpi else [])))
        if mpi is not None:
            console.print(ranks_table(mpi))
            console.print(mpi.summary())
        problems = check(rows + ([mpi.row] if mpi else [])) + (mpi.problems() if mpi else [])
        for problem in problems:
            console.print(f"[red]problem:[/] {problem}")
        ok = not problems
        if ok:
            console.print(f"[green]all {len(rows)} jobs and array children SUCCEEDED[/]")
            if mpi is not None:
                console.print(f"[green]the MPI job SUCCEEDED on {mpi.opts.nodes} nodes[/]")
    finally:
        if proc is not None:
            console.print(f"stopping the head node (pid {proc.pid}) and its nodes")
            stop_process(proc, stop_nodes=True)  # a demo leaves no agent behind
        if temporary and ok:
            shutil.rmtree(home, ignore_errors=True)
        elif temporary:
            console.print(f"kept {home} (head.log, job logs) to look at")
    return 0 if ok else 1


def submit_examples(client: Client, console: Console) -> list[tuple[str, str]]:
    """Register and submit the examples; returns ``[(jobName, jobId)]`` of top-level jobs."""
    base = EXAMPLES.parent  # the examples name their scripts as examples/<script>
    defn = json.loads((EXAMPLES / "jobdef-hello.json").read_text())
    answer = client.register_job_definition(resolve_definition_paths(defn, base))
    console.print(f"registered {answer.get('jobDefinitionName')}:{answer.get('revision')}")
    body = resolve_submit_paths(json.loads((EXAMPLES / "submit-hello.json").read_text()), base)
    body.setdefault("jobQueue", "default")
    top = [(str(body["jobName"]), client.submit(body))]
    console.print(f"submitted {top[0][0]} {top[0][1]}  (examples/submit-hello.json)")
    spec = load_jobspec(EXAMPLES / "pipeline.py")
    for name, job_id in submit_jobspec(client, spec):
        console.print(f"submitted {name} {job_id}  (examples/pipeline.py)")
        top.append((name, job_id))
    return top


@dataclass(frozen=True, slots=True)
class Rank:
    """One ``rank=… size=… node=… ok=…`` line of ``examples/mpi_allreduce.py``."""

    rank: int
    size: int
    address: str
    ok: bool


def parse_ranks(output: str) -> list[Rank]:
    """The rank lines of ``examples/mpi_allreduce.py``'s output, by rank."""
    found = [
        Rank(int(r), int(n), address, ok == "True")
        for r, n, address, ok in RANK_LINE.findall(output)
    ]
    return sorted(found, key=lambda r: r.rank)


@dataclass(frozen=True, slots=True)
class MpiResult:
    """The MPI example: its row, its ranks and where they ran."""

    row: Row
    opts: RunOptions
    ranks: list[Rank]
    node_ids: dict[str, str]
    """Node address → node id."""

    def addresses(self) -> list[str]:
        return sorted({r.address for r in self.ranks})

    def problems(self) -> list[str]:
        """Ranks missing, a wrong sum, or ranks sharing fewer nodes than the job has."""
        out: list[str] = []
        if len(self.ranks) != self.opts.ranks:
            out.append(f"{MPI_NAME}: {len(self.ranks)} rank lines, expected {self.opts.ranks}")
        out += [f"{MPI_NAME}: rank {r.rank} got a wrong sum" for r in self.ranks if not r.ok]
        if self.ranks and len(self.addresses()) != self.opts.nodes:
            out.append(
                f"{MPI_NAME}: ranks ran on {len(self.addresses())} distinct node addresses, "
                f"expected {self.opts.nodes}"
            )
        return out

    def summary(self) -> str:
        where = ", ".join(f"{self.node_ids.get(a, '?')} ({a})" for a in self.addresses())
        return f"MPI: {len(self.ranks)} ranks on {len(self.addresses())} distinct nodes: {where}"


def mpi_available() -> str | None:
    """Why the MPI example cannot run here (None when it can): mpi4py, numpy, an mpiexec."""
    missing = [m for m in ("mpi4py", "numpy") if importlib.util.find_spec(m) is None]
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which("mpiexec", path=path) is None:
        missing.append("mpiexec")
    return f"{', '.join(missing)} not found" if missing else None


def mpi_options(nodes: int) -> RunOptions:
    """``mnp run -N <nodes> --ntasks-per-node 2 --mpi mpich -- <this python>
    examples/mpi_allreduce.py``: this interpreter, so every node's ranks use the same one."""
    return run_options(
        [sys.executable, str(EXAMPLES / "mpi_allreduce.py")],
        nodes=nodes,
        ntasks_per_node=MPI_TASKS_PER_NODE,
        mpi="mpich",
        name=MPI_NAME,
    )


def run_mpi_example(client: Client, console: Console, nodes: int) -> MpiResult | None:
    """Run the MPI example on up to 4 of the head's ``nodes`` local nodes (idle by now);
    None (having said why) when MPI is not installed."""
    why = mpi_available()
    if why is not None:
        console.print(f"skipping the MPI example: {why} (pip install -e '.[mpi]')")
        return None
    opts = mpi_options(min(nodes, MPI_MAX_NODES))
    answer = client.register_job_definition(build_definition(opts))
    job_id = client.submit(
        build_submission(opts, f"{answer['jobDefinitionName']}:{answer['revision']}")
    )
    console.print(
        f"submitted {MPI_NAME} {job_id}  (examples/mpi_allreduce.py: {opts.nodes} nodes × "
        f"{MPI_TASKS_PER_NODE} ranks, MPICH)"
    )
    with WaitProgress(console, {job_id: MPI_NAME}) as progress:
        client.wait([job_id], timeout=WAIT_DEADLINE, on_progress=progress)
    detail = client.describe(job_id)
    output = "".join(client.logs(f"{job_id}#0"))
    verdict = next((ln for ln in output.splitlines() if ln.startswith("allreduce")), "")
    row = _row(client, detail, MPI_NAME, output=verdict or "(no verdict line)")
    node_ids = {str(n.get("address")): str(n.get("nodeId")) for n in client.nodes()}
    return MpiResult(row, opts, parse_ranks(output), node_ids)


def ranks_table(mpi: MpiResult) -> Table:
    out = new_table("RANK", "NODE", "ADDRESS", "OK")
    for r in mpi.ranks:
        ok = Text("ok", style="green") if r.ok else Text("wrong sum", style="red")
        out.add_row(str(r.rank), mpi.node_ids.get(r.address, "?"), r.address, ok)
    return out


def collect_rows(client: Client, job_ids: list[str]) -> list[Row]:
    """A row per job, each array parent followed by its children in index order."""
    rows: list[Row] = []
    for detail in client.describe_jobs(job_ids):
        array = detail.get("arrayProperties") or {}
        if not array.get("size"):
            rows.append(_row(client, detail, str(detail.get("jobName"))))
            continue
        rows.append(_parent_row(detail))
        child_ids = [s["jobId"] for s in client.list_jobs(array_job_id=detail["jobId"])]
        children = sorted(
            client.describe_jobs(child_ids),
            key=lambda c: int((c.get("arrayProperties") or {}).get("index", 0)),
        )
        for child in children:
            index = (child.get("arrayProperties") or {}).get("index")
            rows.append(_row(client, child, f"{detail.get('jobName')}[{index}]"))
    return rows


def check(rows: list[Row]) -> list[str]:
    """What went wrong: jobs not SUCCEEDED, or the dependent job starting before the array's
    children all stopped."""
    problems = [f"{r.name} ({r.job_id}) is {r.status}" for r in rows if r.status != "SUCCEEDED"]
    children = [r for r in rows if r.name.startswith("squares[")]
    after = next((r for r in rows if r.name == "after-squares"), None)
    stops = [r.stopped_at for r in children if r.stopped_at]
    if after is not None and after.started_at and stops and after.started_at < max(stops):
        problems.append("after-squares started before every squares child had stopped")
    return problems


def rows_table(rows: list[Row]) -> Table:
    out = new_table(
        "JOB ID", "NAME", "STATUS", "NODE", "ATTEMPTS", "EXIT", "DURATION", "OUTPUT (first line)",
        last_wraps=False,
    )  # fmt: skip
    for r in rows:
        out.add_row(
            r.job_id,
            r.name,
            styled(r.status),
            r.node or "-",
            r.attempts,
            r.exit_code,
            r.duration,
            Text(r.output),
        )
    return out


def _parent_row(d: JSON) -> Row:
    array = d.get("arrayProperties") or {}
    return Row(
        job_id=str(d.get("jobId")),
        name=str(d.get("jobName")),
        status=str(d.get("status")),
        node="",
        attempts="-",
        exit_code="-",
        duration=fmt_duration(d.get("createdAt"), d.get("stoppedAt")),
        output=f"array of {array.get('size')}: "
        + summary_counts(array.get("statusSummary"), markup=False),
        started_at=d.get("startedAt"),
        stopped_at=d.get("stoppedAt"),
    )


def _row(client: Client, d: JSON, name: str, output: str | None = None) -> Row:
    node, address = d.get("nodeId"), d.get("nodeAddress")
    container = d.get("container") or {}
    exit_code = container.get("exitCode")
    return Row(
        job_id=str(d.get("jobId")),
        name=name,
        status=str(d.get("status")),
        node=f"{node} ({address})" if node and address else str(node or address or "-"),
        attempts=str(len(d.get("attempts") or [])),
        exit_code="-" if exit_code is None else str(exit_code),
        duration=fmt_duration(d.get("startedAt"), d.get("stoppedAt")),
        output=first_line(client, str(d.get("jobId"))) if output is None else output,
        started_at=d.get("startedAt"),
        stopped_at=d.get("stoppedAt"),
    )


def first_line(client: Client, job_id: str) -> str:
    """The first line of a job's latest attempt's output ("" when none, or unreadable)."""
    lines = client.logs(job_id)
    try:
        return next(lines, "").rstrip("\n")
    except MnpError as exc:
        return f"(no output: {exc})"
    finally:
        lines.close()
