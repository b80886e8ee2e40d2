"""A real head node with real local node agents, as processes, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mnp.client.client import Client
from mnp.config import STOP_NODES_SIGNAL
from mnp.providers import netns

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.02
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as e:  # the condition may raise while things start up
            last = e
        else:
            if result:
                return result
            last = result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Cluster:
    """``mnp up`` in the foreground as a child process, on a private home and port."""

    def __init__(
        self,
        home: Path,
        nodes: int = 3,
        vcpus: int = 2,
        memory_mib: int = 2048,
        lost_after: float = 3.0,
        min_timeout: float = 1.0,
        kill_grace: float = 1.0,
        mpi_hang: float = 3.0,
        network: str | None = None,
    ) -> None:
        """``network``: the head's ``MNP_NODE_NETWORK`` (None: as this process has it)."""
        self.home = home
        self.extra_env = {} if network is None else {"MNP_NODE_NETWORK": network}
        self.port = free_port()
        self.argv = [
            sys.executable,
            "-m",
            "mnp",
            "--home",
            str(home),
            "up",
            "--port",
            str(self.port),
            "--nodes",
            str(nodes),
            "--vcpus",
            str(vcpus),
            "--memory-mib",
            str(memory_mib),
            "--lost-after",
            str(lost_after),
            "--min-timeout",
            str(min_timeout),
            "--kill-grace",
            str(kill_grace),
            "--mpi-hang",
            str(mpi_hang),
        ]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = Client(url=self.url, home=home, timeout=30)
        self.seen_pids: set[int] = set()
        self.nodes = nodes

    def start(self, wait_nodes: bool = True) -> Cluster:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "head-test.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **self.extra_env},
        )
        log.close()
        try:
            wait_for("the head node to answer", lambda: self.client.status())
            if wait_nodes:
                self.wait_nodes(self.nodes)
        except BaseException:
            self.stop()  # whatever came up goes down again: nothing outlives a failed start
            raise
        return self

    def __enter__(self) -> Cluster:
        """``with Cluster(home) as c:`` starts it and stops it afterwards, also on failure."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_nodes(self, n: int) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            nodes = [x for x in self.client.nodes() if x["status"] == "ACTIVE"]
            for x in nodes:
                if x.get("pid"):
                    self.seen_pids.add(int(x["pid"]))
            return nodes if len(nodes) >= n else None

        return wait_for(f"{n} active nodes", ready)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def restart(self, port: int | None = None) -> None:
        """Start the head again on the same home; on ``port`` (a new address) if given."""
        if port is not None:
            self.port = port
            self.argv[self.argv.index("--port") + 1] = str(port)
            self.url = f"http://127.0.0.1:{port}"
            self.client.close()
            self.client = Client(url=self.url, home=self.home, timeout=30)
        self.start(wait_nodes=False)

    def agent_pids(self) -> dict[str, int]:
        out = {}
        for pid_file in (self.home / "nodes").glob("*/agent.pid"):
            try:
                out[pid_file.parent.name] = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
        return out

    def stop(self) -> None:
        """Stop the head and its agents (``mnp down --stop-nodes``'s signal: SIGTERM alone
        would leave the agents running); then make sure nothing is left."""
        self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(STOP_NODES_SIGNAL)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        pids = set(self.agent_pids().values()) | self.seen_pids
        for pid in pids:
            if pid_alive(pid):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"launcher.agent" in cmdline and str(self.home).encode() in cmdline:
                    os.kill(pid, signal.SIGKILL)
        # the namespaces of nodes whose agents were killed here (a stopping head removes its own)
        if netns.available():
            netns.Network(netns.home_tag(self.home)).destroy()

    def register(self, name: str, command: list[str], **extra: Any) -> str:
        body = {
            "jobDefinitionName": name,
            "type": "container",
            "containerProperties": {"command": command, **extra.pop("container", {})},
            **extra,
        }
        return str(self.client.register_job_definition(body)["jobDefinitionArn"])

    def submit(self, name: str, definition: str, **extra: Any) -> str:
        return self.client.submit(
            {"jobName": name, "jobQueue": "default", "jobDefinition": definition, **extra}
        )

    def wait_status(self, job_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            d = self.client.describe(job_id)
            return d if d["status"] in statuses else None

        return wait_for(f"job {job_id} to reach {statuses}", check, timeout)

    def logs(self, job_id: str, attempt: int | None = None) -> str:
        return "".join(self.client.logs(job_id, attempt=attempt))

    def dump(self) -> str:
        return json.dumps(self.client.status())
