"""``mnp demo``: the examples end to end on a head node, then a table of where everything ran.

It starts a head node on a fresh temporary home (unless ``home`` already has one running),
registers ``examples/jobdef-hello.json``, submits ``examples/submit-hello.json`` (a standard
job) and ``examples/pipeline.py`` (an array job of 6 and a job depending on it), waits, and
prints every job and array child with its node, attempts, exit code, duration and first
line of output. The head node it started is always stopped, by PID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnp.cli_head import UpOptions, running_head, start_background, stop_process
from mnp.cli_render import WaitProgress, fmt_duration, new_table, styled, summary_counts
from mnp.client import Client
from mnp.errors import MnpError
from mnp.jobspec import load_jobspec, resolve_definition_paths, resolve_submit_paths, submit_jobspec

JSON = dict[str, Any]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAIT_DEADLINE = 300.0


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
    """Run the demo; 0 when every job and array child SUCCEEDED (and the dependency held).

    ``home`` None means a fresh temporary home, removed afterwards when all went well.
    """
    if not (EXAMPLES / "pipeline.py").is_file():
        raise MnpError(f"the examples are not at {EXAMPLES}; run the demo from a source checkout")
    temporary = home is None
    home = home if home is not None else Path(tempfile.mkdtemp(prefix="mnp-demo-"))
    proc: subprocess.Popen[bytes] | None = None
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
        console.print(rows_table(rows))
        problems = check(rows)
        for problem in problems:
            console.print(f"[red]problem:[/] {problem}")
        ok = not problems
        if ok:
            console.print(f"[green]all {len(rows)} jobs and array children SUCCEEDED[/]")
    finally:
        if proc is not None:
            console.print(f"stopping the head node (pid {proc.pid})")
            stop_process(proc)
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


def _row(client: Client, d: JSON, name: str) -> Row:
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
        output=first_line(client, str(d.get("jobId"))),
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
