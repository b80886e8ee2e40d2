"""The real node agent (a subprocess) against a fake head node on 127.0.0.1 (stdlib http.server)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mnp.providers.local import sweep
from mnp.spec.protocol import (
    POLL_PATH,
    REGISTER_PATH,
    REPORT_PATH,
    TOKEN_HEADER,
    Assignment,
    Kill,
    PollReply,
    Ready,
)

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret"


class FakeHead:
    """Records registrations and reported events; answers polls from a script of replies."""

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.dead = False
        """Once set, requests (even on open keep-alive connections) get no answer."""
        self.registers: list[dict[str, Any]] = []
        self.polls: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.tokens: set[str | None] = set()
        self.replies: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.stopped = False
        """Answer registrations 410 (the operator stopped the node)."""
        head = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # one write per response (no Nagle/delayed-ACK stalls)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with head.lock:
                    head.tokens.add(self.headers.get(TOKEN_HEADER))
                status, reply = head.answer(self.path, body)
                if head.dead:
                    self.close_connection = True
                    return
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the agent hung up (killed, or shutting down): not the test's concern

        self.server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == REGISTER_PATH:
            with self.lock:
                self.registers.append(body)
            if self.stopped:
                return 410, {"__type": "NodeLost"}
            return 200, {"heartbeatSeconds": 0.5}
        if path == POLL_PATH:
            with self.lock:
                self.polls.append(body)
            try:
                return self.replies.get(timeout=min(float(body["waitSeconds"]), 0.5))
            except queue.Empty:
                return 200, PollReply().to_wire()
        if path == REPORT_PATH:
            with self.lock:
                self.events.extend(body["events"])
            return 200, {"accepted": len(body["events"])}
        return 404, {"__type": "NotFound"}

    def assign(self, a: Assignment) -> None:
        self.replies.put((200, PollReply(assignments=[a]).to_wire()))

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def of(self, attempt_id: str, kind: str) -> dict[str, Any] | None:
        found = [e for e in self.snapshot() if e["attempt_id"] == attempt_id and e["kind"] == kind]
        return found[0] if found else None

    def close(self) -> None:
        self.dead = True
        self.server.shutdown()
        self.server.server_close()


def until(predicate: Callable[[], T], what: str, timeout: float = 3.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def assignment(command: list[str], job_id: str = "job-1", grace: float = 0.2) -> Assignment:
    return Assignment(
        attempt_id=f"{job_id}/1",
        job_id=job_id,
        attempt=1,
        command=command,
        environment={"GREETING": "hello"},
        timeout_seconds=None,
        kill_grace_seconds=grace,
    )


@pytest.fixture
def head() -> Iterator[FakeHead]:
    fake = FakeHead()
    yield fake
    fake.close()


@pytest.fixture
def agent(head: FakeHead, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The agent process; stopped by pid at teardown, then its leftover jobs swept up."""
    root = tmp_path / "node root"
    argv = [
        sys.executable, "-m", "launcher.agent", "--head", head.url, "--node-id", "node-1",
        "--compute-environment", "local", "--address", "127.0.0.2", "--vcpus", "4",
        "--memory-mib", "4096", "--gpus", "0", "--root", str(root),
    ]  # fmt: skip
    env = {**os.environ, "MNP_AGENT_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    sweep(root)


def test_runs_one_assignment_and_reports_in_order(
    head: FakeHead, agent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    until(lambda: head.registers, "registration")
    reg = head.registers[0]
    assert (reg["nodeId"], reg["vcpus"], reg["running"], reg["pid"]) == ("node-1", 4, [], agent.pid)
    assert (tmp_path / "node root" / "agent.pid").read_text().strip() == str(agent.pid)

    script = 'echo "$GREETING"; echo "$MNP_AGENT_TOKEN" oops >&2; exit 7'
    head.assign(assignment(["sh", "-c", script]))
    exited = until(lambda: head.of("job-1/1", "exited"), "exited event")
    events = [e for e in head.snapshot() if e["attempt_id"] == "job-1/1"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "exited" and set(kinds[1:-1]) == {"log"}
    assert exited["exit_code"] == 7
    out = "".join(e["data"] for e in events if e.get("stream") == "stdout")
    err = "".join(e["data"] for e in events if e.get("stream") == "stderr")
    assert (out, err) == ("hello\n", " oops\n")  # the agent's token is not passed to jobs
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert head.tokens == {TOKEN}

    head.assign(assignment(["sh", "-c", "exit 9"]))  # a repeated assignment is ignored
    head.assign(assignment(["true"], job_id="job-2"))
    until(lambda: head.of("job-2/1", "exited"), "second job")
    assert len([e for e in head.snapshot() if e["attempt_id"] == "job-1/1"]) == len(events)

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=5) == 0


def test_reregisters_on_unknown_node_kills_and_stops_gracefully(
    head: FakeHead, agent: subprocess.Popen[bytes]
) -> None:
    until(lambda: head.registers, "registration")
    head.assign(assignment(["sleep", "30"], job_id="long"))
    head.assign(assignment(["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"], job_id="polite"))
    until(lambda: head.of("polite/1", "started"), "both jobs started")
    head.replies.put((404, {"__type": "UnknownNode"}))
    again = until(lambda: head.registers[1:], "second registration")[0]
    assert sorted(again["running"]) == ["long/1", "polite/1"]

    head.replies.put((200, PollReply(kills=[Kill("long/1", "Terminated by user")]).to_wire()))
    killed = until(lambda: head.of("long/1", "exited"), "killed job to exit")
    assert (killed["exit_code"], killed["reason"]) == (143, "Terminated by user")

    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=5) == 0
    polite = head.of("polite/1", "exited")
    assert polite is not None and (polite["exit_code"], polite["reason"]) == (
        0,
        "Node agent stopped",
    )


def test_node_lost_kills_jobs_and_exits_3(head: FakeHead, agent: subprocess.Popen[bytes]) -> None:
    head.assign(assignment(["sleep", "30"]))
    started = until(lambda: head.of("job-1/1", "started"), "job start")
    head.stopped = True  # the poll refused, the agent kills its jobs and registers again
    head.replies.put((409, {"__type": "StaleSession"}))
    assert agent.wait(timeout=20) == 3
    pid = started["pid"]
    until(lambda: gone(pid), f"job process {pid} to die")


def test_events_survive_a_head_restart(
    head: FakeHead, agent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    script = f'while [ ! -e "{gate}" ]; do sleep 0.01; done; echo done; exit 5'
    head.assign(assignment(["sh", "-c", script]))
    until(lambda: head.of("job-1/1", "started"), "job start")
    port = int(head.url.rsplit(":", 1)[1])
    head.close()  # the head goes away; the job keeps running and finishes meanwhile
    gate.write_text("")
    new_head = FakeHead(port)
    try:
        exited = until(lambda: new_head.of("job-1/1", "exited"), "exited at the new head")
        assert exited["exit_code"] == 5
        logs = [e["data"] for e in new_head.snapshot() if e["kind"] == "log"]
        assert logs == ["done\n"]
    finally:
        new_head.close()


def test_jobs_carry_the_node_root_marker(head: FakeHead, agent: subprocess.Popen[bytes]) -> None:
    """A killed agent cannot stop its jobs; the marker lets the provider sweep them up."""
    head.assign(assignment(["sleep", "30"]))
    pid = until(lambda: head.of("job-1/1", "started"), "job start")["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert any(e.startswith(b"MNP_NODE_ROOT=") for e in environ)


def test_a_ready_is_reported_applied_and_a_repeated_kill_is_ignored(
    head: FakeHead, agent: subprocess.Popen[bytes]
) -> None:
    """The head repeats Ready and Kill until the node's polls show their effect: the agent
    lists the attempts it applied a Ready to, and a repeated Kill changes nothing."""
    script = "trap 'sleep 0.3; exit 7' TERM; sleep 30 & wait"
    head.assign(assignment(["sh", "-c", script], grace=5.0))
    until(lambda: head.of("job-1/1", "started"), "job start")
    head.replies.put((200, PollReply(ready=[Ready("job-1/1")]).to_wire()))
    head.replies.put((200, PollReply(ready=[Ready("job-1/1")]).to_wire()))

    def ready_listed() -> bool:
        with head.lock:
            return any(p.get("ready") == ["job-1/1"] for p in head.polls)

    until(ready_listed, "a poll listing the Ready as applied")
    head.replies.put((200, PollReply(kills=[Kill("job-1/1", "first")]).to_wire()))
    head.replies.put((200, PollReply(kills=[Kill("job-1/1", "again")]).to_wire()))
    exited = until(lambda: head.of("job-1/1", "exited"), "killed job to exit")
    assert (exited["exit_code"], exited["reason"]) == (7, "first")
