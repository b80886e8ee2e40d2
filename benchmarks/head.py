"""A head node with local agents, as a child process of the benchmark."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from benchmarks.config import JSON, MEMORY_MIB, NODES, REPO, VCPUS, say
from benchmarks.machine import pid_alive, proc_status_kib
from benchmarks.polling import Abort, wait_for
from mnp.client.client import Client
from mnp.config import STOP_NODES_SIGNAL


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repo_env(repo: Path = REPO) -> dict[str, str]:
    """This process's environment with ``repo`` (this checkout unless told) first on
    ``PYTHONPATH``, so a child ``python -m mnp`` runs that tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH")) if p)
    return env


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGTERM/SIGINT meanwhile (in the main thread), so cleanup is not cut short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class HeadNode:
    """``mnp up`` in the foreground on a private home and port; a context manager.

    Leaving the ``with`` block (also on error) stops the head and its nodes by PID
    (:data:`mnp.config.STOP_NODES_SIGNAL`), waits for it, and SIGKILLs any agent it started
    that is still alive (by the PIDs it reported), then removes the home unless ``keep``.
    """

    def __init__(self, scratch: Path, label: str, keep: bool = False, nodes: int = NODES,
                 vcpus: int = VCPUS, repo: Path = REPO) -> None:
        self.nodes = nodes
        self.vcpus = vcpus
        self.repo = repo
        """The tree whose ``mnp`` the head (and so its agents) runs."""
        self.home = Path(tempfile.mkdtemp(prefix=f"mnp-bench-{label}-", dir=scratch))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keep = keep
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None
        self.pid = 0
        self.agent_pids: set[int] = set()
        self.stop_s: float | None = None
        """How long the head took to exit after SIGTERM."""

    @property
    def c(self) -> Client:
        assert self.client is not None, "the head node is not started"
        return self.client

    @property
    def db_path(self) -> Path:
        return self.home / "mnp.sqlite3"

    def __enter__(self) -> HeadNode:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            say(f"head log tail ({self.home / 'head.log'}):\n{self.log_tail()}")
        self.stop()

    def start(self) -> None:
        """Start the head; return once it answers and its ``nodes`` agents are ACTIVE."""
        argv = [sys.executable, "-m", "mnp", "--home", str(self.home), "up",
                "--port", str(self.port), "--nodes", str(self.nodes), "--vcpus", str(self.vcpus),
                "--memory-mib", str(MEMORY_MIB)]
        with open(self.home / "head.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         env=repo_env(self.repo), cwd=self.home)
        self.client = Client(url=self.url, home=self.home, timeout=120)

        def answering() -> JSON | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Abort(f"the head node exited with {self.proc.returncode}")
            return self.c.status()

        self.pid = int(wait_for("the head node to answer", answering, 30)["pid"])

        def nodes_active() -> bool:
            nodes = self.c.nodes()
            self.agent_pids |= {int(n["pid"]) for n in nodes if n.get("pid")}
            return sum(1 for n in nodes if n["status"] == "ACTIVE") >= self.nodes

        wait_for(f"{self.nodes} ACTIVE nodes", nodes_active, 60)
        self.agent_pids |= self._agent_pid_files()

    def _agent_pid_files(self) -> set[int]:
        pids: set[int] = set()
        for f in (self.home / "nodes").glob("*/agent.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.add(int(f.read_text().strip()))
        return pids

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.home / "head.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the head and its agents and remove the home (unless ``keep``); idempotent,
        and not cut short by SIGTERM/SIGINT meanwhile."""
        with _signals_held():
            self._stop()

    def _stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        self.agent_pids |= self._agent_pid_files()
        proc = self.proc
        t0 = time.perf_counter()
        if proc is not None and proc.poll() is None:
            proc.send_signal(STOP_NODES_SIGNAL)  # SIGTERM would leave the agents running
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                say(f"head {proc.pid} ignored SIGTERM for 60 s; SIGKILL")
                proc.kill()
                proc.wait(10)
            self.stop_s = time.perf_counter() - t0
        self._kill_leftover_agents()
        if not self.keep:
            t = time.perf_counter()
            shutil.rmtree(self.home, ignore_errors=True)
            if time.perf_counter() - t > 5:
                say(f"  removing {self.home} took {time.perf_counter() - t:.0f} s")

    def _kill_leftover_agents(self) -> None:
        """SIGKILL the agents of this home still alive; the command line is checked so a
        reused PID is left alone."""
        for pid in sorted(self.agent_pids):
            if not pid_alive(pid):
                continue
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"launcher.agent" in cmdline and str(self.home).encode() in cmdline:
                    say(f"agent {pid} outlived its head; SIGKILL")
                    os.kill(pid, signal.SIGKILL)
