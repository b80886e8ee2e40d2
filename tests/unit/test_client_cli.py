"""The client and the CLI against a small stand-in head node (stdlib HTTP server in a thread).

The stand-in answers canned JSON per operation and records every request; the real head node
is exercised by the integration tier.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from mnp.cli import head as cli_head
from mnp.cli.main import cli
from mnp.cli.state import error_lines
from mnp.client.client import Client, HeadUnavailable, RequestInvalid
from mnp.config import HeadConfig, HeadInfo
from mnp.errors import Conflict, FieldError, MnpError, NotFound, TransientError
from mnp.spec.protocol import TOKEN_HEADER

JSON = dict[str, Any]
Handler = Callable[[JSON], "tuple[int, Any] | JSON"]
REPO = Path(__file__).resolve().parents[2]


class FakeHead:
    """Answers ``POST /api/v1/<op>`` from ``handlers`` and ``GET /api/v1/logs/<id>`` from
    ``logs`` (a list of chunks per job, each sent and flushed separately)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {"getStatus": lambda b: {"version": "test"}}
        self.requests: list[tuple[str, JSON, dict[str, str]]] = []
        self.logs: dict[str, list[str]] = {}
        self.between_chunks: Callable[[], None] = lambda: None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                op = self.path.removeprefix("/api/v1/")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                fake.requests.append((op, body, dict(self.headers)))
                handler = fake.handlers.get(op)
                if handler is None:
                    self._send(404, {"__type": "ClientException", "message": f"unknown {op}"})
                    return
                answer = handler(body)
                status, payload = answer if isinstance(answer, tuple) else (200, answer)
                self._send(status, payload)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                job_id = unquote(url.path.removeprefix("/api/v1/logs/"))
                fake.requests.append(("logs", {"jobId": job_id, **parse_qs(url.query)}, {}))
                if job_id not in fake.logs:
                    self._send(404, {"__type": "ClientException", "message": f"no job {job_id}"})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                for i, chunk in enumerate(fake.logs[job_id]):
                    if i:
                        fake.between_chunks()
                    self.wfile.write(chunk.encode())
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins request threads
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def ops(self, name: str) -> list[JSON]:
        return [body for op, body, _ in self.requests if op == name]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MNP_URL", "MNP_TOKEN", "MNP_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def head() -> Iterator[FakeHead]:
    fake = FakeHead()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def client(head: FakeHead) -> Iterator[Client]:
    with Client(url=head.url, timeout=5) as c:
        yield c


def run(head: FakeHead | None, *args: str, input: str | None = None) -> Result:
    argv = (["--url", head.url] if head is not None else []) + list(args)
    return CliRunner().invoke(cli, argv, input=input, catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job(job_id: str, status: str = "SUCCEEDED", **extra: Any) -> JSON:
    return {"jobId": job_id, "jobName": f"name-{job_id}", "status": status, **extra}


# -- discovery and errors --------------------------------------------------------------------


def test_discovers_head_and_token_from_head_json(head: FakeHead, tmp_path: Path) -> None:
    HeadInfo(url=head.url, pid=os.getpid(), token="s3cret").write(tmp_path / "head.json")
    with Client(home=tmp_path) as c:
        assert c.status() == {"version": "test"}
    assert head.requests[-1][2][TOKEN_HEADER] == "s3cret"


def test_env_url_and_token(head: FakeHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNP_URL", head.url)
    monkeypatch.setenv("MNP_TOKEN", "from-env")
    with Client(home=tmp_path) as c:
        c.status()
    assert head.requests[-1][2][TOKEN_HEADER] == "from-env"


def test_no_head_running(tmp_path: Path) -> None:
    with pytest.raises(HeadUnavailable, match=r"no head node is running.*mnp up"):
        Client(home=tmp_path)
    result = run(None, "--home", str(tmp_path), "status")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no head node is running")


def test_unreachable_head_mentions_stale_head_json(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    HeadInfo(url=f"http://127.0.0.1:{free_port()}", pid=dead.pid, token=None).write(
        tmp_path / "head.json"
    )
    with Client(home=tmp_path, timeout=2) as c, pytest.raises(HeadUnavailable, match="stale"):
        c.status()


@pytest.mark.parametrize(
    ("status", "exc"),
    [(404, NotFound), (409, Conflict), (500, MnpError), (503, TransientError), (401, MnpError)],
)
def test_error_mapping(client: Client, head: FakeHead, status: int, exc: type[MnpError]) -> None:
    head.handlers["cancelJob"] = lambda b: (status, {"__type": "X", "message": "nope"})
    with pytest.raises(exc, match="nope") as info:
        client.cancel("j", "r")
    assert type(info.value) is exc or status == 503


def test_invalid_input_carries_field_errors(client: Client, head: FakeHead) -> None:
    errors = [{"path": "jobName", "message": "required"}, {"path": "a.b", "message": "bad"}]
    head.handlers["submitJob"] = lambda b: (400, {"message": "invalid", "errors": errors})
    with pytest.raises(RequestInvalid) as info:
        client.submit({})
    assert info.value.message == "invalid"
    assert info.value.errors == [FieldError("jobName", "required"), FieldError("a.b", "bad")]
    # A message that only repeats the field errors is replaced by a headline.
    head.handlers["submitJob"] = lambda b: (
        400,
        {"message": "jobName: required; a.b: bad", "errors": errors},
    )
    with pytest.raises(RequestInvalid) as info:
        client.submit({})
    assert info.value.message == "invalid submitJob request"


def test_error_lines() -> None:
    exc = RequestInvalid("invalid SubmitJob", [FieldError("x", "bad"), FieldError("y", "worse")])
    assert error_lines(exc) == ["error: invalid SubmitJob", "  x: bad", "  y: worse"]
    only = RequestInvalid("x: bad", [FieldError("x", "bad")])
    assert error_lines(only) == ["error: x: bad"]
    plain = NotFound("job j not found")
    plain.add_note("more context")
    assert error_lines(plain) == ["error: job j not found", "  more context"]


# -- client calls ----------------------------------------------------------------------------


def test_describe_jobs_in_chunks_of_100(client: Client, head: FakeHead) -> None:
    head.handlers["describeJobs"] = lambda b: {"jobs": [job(i) for i in b["jobs"] if i != "j7"]}
    ids = [f"j{i}" for i in range(250)]
    details = client.describe_jobs(ids)
    assert [len(b["jobs"]) for b in head.ops("describeJobs")] == [100, 100, 50]
    assert len(details) == 249
    assert client.describe("j3")["jobId"] == "j3"
    with pytest.raises(NotFound, match="j7"):
        client.describe("j7")


def test_list_jobs_pages_and_filters(client: Client, head: FakeHead) -> None:
    pages = {None: ({"jobSummaryList": [job("a", "RUNNING"), job("b")], "nextToken": "t1"})}
    pages["t1"] = {"jobSummaryList": [job("c", "FAILED")]}
    head.handlers["listJobs"] = lambda b: pages[b.get("nextToken")]
    assert [j["jobId"] for j in client.list_jobs()] == ["a", "b", "c"]
    first = head.ops("listJobs")[0]
    assert first["allStatuses"] is True and "jobQueue" not in first

    head.requests.clear()
    assert [j["jobId"] for j in client.list_jobs(queue="q", status="RUNNING")] == ["a"]
    first = head.ops("listJobs")[0]
    assert first["jobQueue"] == "q" and first["jobStatus"] == "RUNNING"
    assert "allStatuses" not in first

    head.requests.clear()
    got = client.list_jobs(name="na*", status=["SUCCEEDED", "FAILED"], array_job_id="p")
    assert [j["jobId"] for j in got] == ["b", "c"]
    first = head.ops("listJobs")[0]
    assert first["filters"] == [{"name": "JOB_NAME", "values": ["na*"]}]
    assert first["arrayJobId"] == "p" and first["allStatuses"] is True

    head.requests.clear()
    assert [j["jobId"] for j in client.list_jobs(limit=1)] == ["a"]
    assert len(head.ops("listJobs")) == 1


def test_wait_reports_progress_for_arrays(client: Client, head: FakeHead) -> None:
    polls = {"n": 0}

    def describe(body: JSON) -> JSON:
        polls["n"] += 1
        done = min(polls["n"], 3)
        summary = {"SUCCEEDED": done, "RUNNING": 3 - done}
        status = "SUCCEEDED" if done == 3 else "PENDING"
        array = {"size": 3, "statusSummary": summary}
        plain = job("s", "SUCCEEDED" if polls["n"] > 1 else "RUNNING")
        jobs = {"arr": job("arr", status, arrayProperties=array), "s": plain}
        return {"jobs": [jobs[i] for i in body["jobs"]]}

    head.handlers["describeJobs"] = describe
    seen: list[JSON] = []
    final = client.wait(["arr", "s"], poll_interval=0.01, on_progress=seen.append)
    assert final == {"arr": "SUCCEEDED", "s": "SUCCEEDED"}
    summaries = [d["arrayProperties"]["statusSummary"] for d in seen if d["jobId"] == "arr"]
    assert summaries[0] == {"SUCCEEDED": 1, "RUNNING": 2}
    assert summaries[-1] == {"SUCCEEDED": 3, "RUNNING": 0}
    assert head.ops("describeJobs")[-1]["jobs"] == ["arr"]  # finished jobs are not polled again


def test_wait_timeout_and_unknown(client: Client, head: FakeHead) -> None:
    head.handlers["describeJobs"] = lambda b: {"jobs": [job(i, "RUNNABLE") for i in b["jobs"]]}
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"timed out after 0.2 s waiting for j1 \(RUNNABLE\)"):
        client.wait(["j1"], timeout=0.2, poll_interval=0.05)
    assert time.monotonic() - started < 2
    head.handlers["describeJobs"] = lambda b: {"jobs": []}
    with pytest.raises(NotFound, match="ghost"):
        client.wait(["ghost"])


def test_logs_stream_line_by_line(client: Client, head: FakeHead) -> None:
    head.logs["p:3"] = ["line one\nline ", "two\n", "tail without newline"]
    first_line_seen = threading.Event()
    # The second chunk is only sent once the client has the first line: proves streaming.
    head.between_chunks = lambda: first_line_seen.wait(5) or None
    lines = client.logs("p:3", attempt=2, follow=True)
    assert next(lines) == "line one\n"
    first_line_seen.set()
    assert list(lines) == ["line two\n", "tail without newline"]
    assert head.ops("logs")[0] == {"jobId": "p:3", "attempt": ["2"], "follow": ["1"]}
    with pytest.raises(NotFound, match="no job ghost"):
        list(client.logs("ghost"))


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_submit_json(head: FakeHead, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head.handlers["submitJob"] = lambda b: {"jobId": "j-1", "jobName": b["jobName"]}
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "go.sh").write_text("echo go\n")
    spec = tmp_path / "job.json"
    spec.write_text(
        json.dumps(
            {
                "jobName": "go",
                "jobDefinition": "d",
                "containerOverrides": {"command": ["bash", "scripts/go.sh"]},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    result = run(head, "submit", str(spec))
    assert result.exit_code == 0, result.output
    assert result.stdout == "j-1\n"
    body = head.ops("submitJob")[0]
    assert body["jobQueue"] == "default"
    assert body["containerOverrides"]["command"] == ["bash", str(tmp_path / "scripts" / "go.sh")]

    result = run(head, "submit", "--queue", "q2", "--name", "renamed", "--json", str(spec))
    assert json.loads(result.stdout) == [{"jobName": "renamed", "jobId": "j-1"}]
    assert head.ops("submitJob")[1]["jobQueue"] == "q2"


def test_cli_field_errors_on_stderr(head: FakeHead, tmp_path: Path) -> None:
    errors = [
        {"path": "arrayProperties.size", "message": "must be between 2 and 10000"},
        {"path": "jobDefinition", "message": "no job definition 'nope'"},
    ]
    head.handlers["submitJob"] = lambda b: (400, {"message": "invalid SubmitJob", "errors": errors})
    spec = tmp_path / "job.json"
    spec.write_text('{"jobName": "x", "jobDefinition": "nope", "arrayProperties": {"size": 1}}')
    result = run(head, "submit", str(spec))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: invalid SubmitJob",
        "  arrayProperties.size: must be between 2 and 10000",
        "  jobDefinition: no job definition 'nope'",
    ]


def test_cli_bad_json_and_usage_errors(head: FakeHead, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = run(head, "submit", str(bad))
    assert result.exit_code == 1 and "not valid JSON" in result.stderr
    assert run(head, "jobs", "--limit", "-3").exit_code == 2
    assert run(head, "frobnicate").exit_code == 2
    two = tmp_path / "two.py"
    two.write_text("JOBS = [{'jobName': 'a', 'jobDefinition': 'd'}] * 2\n")
    result = run(head, "submit", "--name", "x", str(two))
    assert result.exit_code == 2 and "--name needs a single job" in result.stderr


def test_cli_submit_jobspec_and_wait(head: FakeHead, tmp_path: Path) -> None:
    head.handlers["registerJobDefinition"] = lambda b: {"revision": 1}
    head.handlers["submitJob"] = lambda b: {"jobId": f"id-{b['jobName']}"}
    polls = {"n": 0}

    def describe(body: JSON) -> JSON:
        polls["n"] += 1
        array = {"size": 4, "statusSummary": {"SUCCEEDED": min(polls["n"], 4)}}
        status = "SUCCEEDED" if polls["n"] >= 4 else "PENDING"
        details = {
            "id-arr": job("id-arr", status, arrayProperties=array),
            "id-after": job("id-after", "FAILED" if polls["n"] >= 4 else "PENDING"),
        }
        return {"jobs": [details[i] for i in body["jobs"]]}

    head.handlers["describeJobs"] = describe
    spec = tmp_path / "pipe.py"
    spec.write_text(
        "JOB_DEFINITIONS = [{'jobDefinitionName': 'd', 'type': 'container'}]\n"
        "JOBS = [{'jobName': 'arr', 'jobDefinition': 'd', 'arrayProperties': {'size': 4}},\n"
        "        {'jobName': 'after', 'jobDefinition': 'd', 'dependsOn': [{'jobId': '@arr'}]}]\n"
    )
    result = run(head, "submit", "--wait", "--json", str(spec))
    assert result.exit_code == 1  # one job FAILED
    assert json.loads(result.stdout) == [
        {"jobName": "arr", "jobId": "id-arr", "status": "SUCCEEDED"},
        {"jobName": "after", "jobId": "id-after", "status": "FAILED"},
    ]
    assert head.ops("submitJob")[1]["dependsOn"] == [{"jobId": "id-arr"}]
    assert "arr" in result.stderr and "4/4" in result.stderr  # the progress display

    head.requests.clear()
    polls["n"] = 0
    head.handlers["describeJobs"] = lambda b: {"jobs": [job(i) for i in b["jobs"]]}
    result = run(head, "submit", "--wait", str(spec))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["arr\tid-arr\tSUCCEEDED", "after\tid-after\tSUCCEEDED"]


def test_cli_register_from_stdin(head: FakeHead) -> None:
    head.handlers["registerJobDefinition"] = lambda b: {
        "jobDefinitionName": b["jobDefinitionName"],
        "revision": 3,
        "jobDefinitionArn": "arn:aws:batch:local:0:job-definition/hello:3",
    }
    defn = (REPO / "examples" / "jobdef-hello.json").read_text()
    result = run(head, "register", "-", input=defn)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("registered hello:3 (arn:")
    result = run(head, "register", "--json", "-", input=defn)
    assert json.loads(result.stdout)["revision"] == 3


def test_cli_jobs_table_and_json(head: FakeHead) -> None:
    now = int(time.time() * 1000)
    summaries = [
        job(
            "3f2a-long-job-id-0000000000000001",
            "RUNNING",
            jobQueueName="default",
            nodeId="local-2",
            attempt=1,
            createdAt=now - 5000,
            startedAt=now - 4000,
        ),
        job("j2", "FAILED", statusReason="Essential container in task exited", attempt=2),
    ]
    head.handlers["listJobs"] = lambda b: {"jobSummaryList": summaries}
    result = run(head, "jobs", "--state", "running", "--state", "FAILED")
    assert result.exit_code == 0
    for text in ("ID", "DURATION", "REASON", "3f2a-long-job-id-0000000000000001", "local-2"):
        assert text in result.stdout
    assert "Essential container in task exited" in result.stdout
    result = run(head, "jobs", "--json", "--limit", "1")
    assert json.loads(result.stdout) == summaries[:1]


def test_cli_describe(head: FakeHead) -> None:
    detail = job(
        "j1",
        "SUCCEEDED",
        nodeId="local-1",
        nodeAddress="127.0.0.2",
        container={"command": ["bash", "hello.sh"], "exitCode": 0},
        attempts=[{"container": {"exitCode": 0}, "startedAt": 1000, "stoppedAt": 3500}],
        history=[
            {"status": "SUBMITTED", "at": 500, "reason": None},
            {"status": "SUCCEEDED", "at": 3500, "reason": "Essential container exited"},
        ],
    )
    head.handlers["describeJobs"] = lambda b: {"jobs": [detail] if b["jobs"] == ["j1"] else []}
    result = run(head, "describe", "j1")
    assert result.exit_code == 0
    for text in ("local-1 (127.0.0.2)", "bash hello.sh", "attempts", "2.5s", "history"):
        assert text in result.stdout
    assert "Essential container exited" in result.stdout
    assert json.loads(run(head, "describe", "--json", "j1").stdout) == detail
    missing = run(head, "describe", "nope")
    assert missing.exit_code == 1 and missing.stderr == "error: job nope not found\n"


def test_cli_logs(head: FakeHead) -> None:
    head.logs["j1"] = ["hello\n", "world\n"]
    result = run(head, "logs", "j1", "-f", "--attempt", "1")
    assert result.exit_code == 0 and result.stdout == "hello\nworld\n"
    assert head.ops("logs")[-1]["follow"] == ["1"]


def test_cli_cancel_and_terminate(head: FakeHead) -> None:
    head.handlers["cancelJob"] = lambda b: {}
    head.handlers["terminateJob"] = lambda b: {}
    head.handlers["describeJobs"] = lambda b: {"jobs": [job("j1", "RUNNING")]}
    result = run(head, "cancel", "j1")
    assert result.exit_code == 0
    assert head.ops("cancelJob") == [{"jobId": "j1", "reason": "Cancelled by user"}]
    assert "mnp terminate j1" in result.stderr
    result = run(head, "terminate", "j1", "--reason", "enough")
    assert result.exit_code == 0
    assert head.ops("terminateJob") == [{"jobId": "j1", "reason": "enough"}]


def test_cli_cluster_tables(head: FakeHead) -> None:
    head.handlers["getStatus"] = lambda b: {
        "version": "0.1.0",
        "url": head.url,
        "pid": 42,
        "startedAt": int(time.time() * 1000) - 90_000,
        "jobCounts": {"RUNNING": 2, "SUCCEEDED": 5},
        "queues": ["default"],
        "computeEnvironments": 1,
        "nodes": [{"nodeId": "local-1"}],
    }
    head.handlers["describeJobQueues"] = lambda b: {
        "jobQueues": [
            {
                "jobQueueName": "default",
                "state": "ENABLED",
                "status": "VALID",
                "priority": 1,
                "computeEnvironmentOrder": [
                    {
                        "order": 1,
                        "computeEnvironment": "arn:aws:batch:x:0:compute-environment/local",
                    }
                ],
            }
        ]
    }
    head.handlers["describeComputeEnvironments"] = lambda b: {
        "computeEnvironments": [
            {
                "computeEnvironmentName": "local",
                "type": "MANAGED",
                "state": "ENABLED",
                "status": "VALID",
                "mnp": {"provider": "local", "nodes": 4},
            }
        ]
    }
    node = {
        "nodeId": "local-1",
        "computeEnvironment": "local",
        "address": "127.0.0.2",
        "status": "ACTIVE",
        "vcpus": 4,
        "freeVcpus": 3,
        "memoryMiB": 4096,
        "freeMemoryMiB": 3840,
        "gpus": 0,
        "freeGpus": 0,
        "runningJobs": ["j1"],
        "lastHeartbeatAt": int(time.time() * 1000),
    }
    head.handlers["listNodes"] = lambda b: {"nodes": [node]}
    status = run(head, "status").stdout
    assert "RUNNING 2  SUCCEEDED 5" in status and "up 1m3" in status
    assert "default" in run(head, "queues").stdout
    assert "local" in run(head, "queues").stdout
    ces = run(head, "ces").stdout
    assert "MANAGED" in ces and "local" in ces
    nodes = run(head, "nodes").stdout
    assert "127.0.0.2" in nodes and "3/4 free" in nodes
    for command in ("status", "queues", "ces", "nodes"):
        result = run(head, command, "--json")
        assert result.exit_code == 0 and json.loads(result.stdout)
    assert json.loads(run(head, "nodes", "--json").stdout) == [node]


def test_cli_finds_head_through_home(head: FakeHead, tmp_path: Path) -> None:
    HeadInfo(url=head.url, pid=os.getpid(), token="t").write(tmp_path / "head.json")
    result = run(None, "--home", str(tmp_path), "status", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"version": "test"}
    assert head.requests[-1][2][TOKEN_HEADER] == "t"


# -- head-node lifecycle ---------------------------------------------------------------------


def test_up_when_already_running(head: FakeHead, tmp_path: Path) -> None:
    HeadInfo(url=head.url, pid=os.getpid(), token=None).write(tmp_path / "head.json")
    result = run(None, "--home", str(tmp_path), "up", "-d")
    assert result.exit_code == 0
    assert "already running" in result.stdout and head.url in result.stdout


def test_up_foreground_builds_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[HeadConfig] = []
    fake_server = types.ModuleType("mnp.head")
    fake_server.run = seen.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mnp.head", fake_server)
    home = tmp_path / "home"
    args = ["--home", str(home), "up", "--port", "0", "--nodes", "2", "--vcpus", "8"]
    result = run(None, *args, "--memory-mib", "512", "--min-timeout", "1", "--kill-grace", "0.5")
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.home, config.port, config.min_timeout_seconds) == (home, 0, 1.0)
    assert config.kill_grace_seconds == 0.5 and config.lost_after_seconds == 10.0
    assert config.local is not None
    assert (config.local.nodes, config.local.vcpus, config.local.memory_mib) == (2, 8, 512)
    assert home.is_dir()


def test_up_options_round_trip() -> None:
    options = cli_head.UpOptions(port=0, nodes=0, lost_after=3.5)
    assert options.config(Path("/h")).local is None
    assert options.argv()[-2:] == ["--lost-after", "3.5"]


def test_down(tmp_path: Path) -> None:
    result = run(None, "--home", str(tmp_path), "down")
    assert result.exit_code == 0 and "no head node is running" in result.stdout
    # A stand-in head-node process: its command line mentions mnp, as the real one does.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "mnp-test-head"],
    )
    try:
        (tmp_path / "head.pid").write_text(str(proc.pid))
        result = run(None, "--home", str(tmp_path), "down")
        assert result.exit_code == 0, result.output
        assert f"stopped the head node (pid {proc.pid})" in result.stdout
        assert proc.wait(timeout=5) == -15
    finally:
        proc.kill()
        proc.wait()


def test_down_refuses_a_pid_that_is_not_mnp(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "head.pid").write_text(str(proc.pid))
        result = run(None, "--home", str(tmp_path), "down")
        assert result.exit_code == 1 and "not an mnp head node" in result.stderr
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


# -- the demo against the stand-in head ------------------------------------------------------


class FakeBatch:
    """Just enough head-node behaviour for the demo: jobs finish as soon as they are
    submitted, array children exist, and each job has output."""

    def __init__(self, head: FakeHead) -> None:
        self.jobs: dict[str, JSON] = {}
        self.head = head
        head.handlers.update(
            registerJobDefinition=lambda b: {
                "jobDefinitionName": b["jobDefinitionName"],
                "revision": 1,
            },
            submitJob=self.submit,
            describeJobs=lambda b: {"jobs": [self.jobs[i] for i in b["jobs"] if i in self.jobs]},
            listJobs=lambda b: {
                "jobSummaryList": [
                    j for j in self.jobs.values() if j["jobId"].startswith(b["arrayJobId"] + ":")
                ]
            },
        )

    def _finished(self, job_id: str, name: str, node: int, start: int) -> JSON:
        self.head.logs[job_id] = [f"output of {name}\n", "second line\n"]
        return {
            "jobId": job_id,
            "jobName": name,
            "status": "SUCCEEDED",
            "nodeId": f"local-{node}",
            "nodeAddress": f"127.0.0.{node + 1}",
            "container": {"exitCode": 0},
            "attempts": [{"container": {"exitCode": 0}}],
            "startedAt": start,
            "stoppedAt": start + 300,
        }

    def submit(self, body: JSON) -> JSON:
        job_id = f"{len(self.jobs):04d}-{body['jobName']}"
        size = (body.get("arrayProperties") or {}).get("size")
        start = 1_000_000 + 1000 * len(self.jobs)
        if size:
            summary = {"SUCCEEDED": size}
            self.jobs[job_id] = {
                "jobId": job_id,
                "jobName": body["jobName"],
                "status": "SUCCEEDED",
                "arrayProperties": {"size": size, "statusSummary": summary},
            }
            for i in range(size):
                child = self._finished(f"{job_id}:{i}", body["jobName"], i % 2 + 1, start)
                child["arrayProperties"] = {"index": i, "size": size}
                self.jobs[child["jobId"]] = child
        else:
            self.jobs[job_id] = self._finished(job_id, body["jobName"], 1, start + 500)
        return {"jobId": job_id, "jobName": body["jobName"]}


def test_demo_against_a_running_head(head: FakeHead, tmp_path: Path) -> None:
    from mnp.cli.demo import run_demo

    batch = FakeBatch(head)
    HeadInfo(url=head.url, pid=os.getpid(), token=None).write(tmp_path / "head.json")
    buffer = io.StringIO()
    code = run_demo(nodes=2, home=tmp_path, console=Console(file=buffer, width=220))
    text = buffer.getvalue()
    assert code == 0, text
    assert "all 9 jobs and array children SUCCEEDED" in text
    for i in range(6):
        assert f"squares[{i}]" in text
    assert "local-2 (127.0.0.3)" in text and "output of hello" in text
    assert "array of 6: SUCCEEDED 6" in text
    hello = head.ops("submitJob")[0]
    assert hello["jobQueue"] == "default"
    defn = head.ops("registerJobDefinition")[0]
    assert defn["containerProperties"]["command"][1] == str(REPO / "examples" / "hello.sh")
    after = head.ops("submitJob")[2]
    assert after["dependsOn"] == [{"jobId": "0001-squares"}]
    assert (tmp_path / "head.json").exists()  # a head it did not start is left alone

    # The dependency was not honoured (after-squares started before a child stopped): exit 1.
    batch.jobs.clear()
    original = batch._finished

    def early(job_id: str, name: str, node: int, start: int) -> JSON:
        return original(job_id, name, node, 1 if name == "after-squares" else start)

    batch._finished = early  # type: ignore[method-assign]
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "demo"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "after-squares started before every squares child had stopped" in result.stdout
