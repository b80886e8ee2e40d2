"""Starting and stopping a head-node process for the CLI (`mnp up -d`, `mnp down`, the demo).

The head node itself is ``mnp.head.run(config)``; this module only spawns it as
``python -m mnp --home H up …`` in its own session, waits for it to answer, and stops it by
PID: SIGTERM detaches (the head exits, its nodes keep running their jobs for the next head),
:data:`~mnp.config.STOP_NODES_SIGNAL` stops the nodes too. Every wait polls a condition
against a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mnp
from mnp.client.client import Client
from mnp.client.transport import pid_alive
from mnp.config import STOP_NODES_SIGNAL, HeadConfig, HeadInfo, LocalNodesConfig
from mnp.errors import MnpError

START_DEADLINE = 30.0
STOP_DEADLINE = 30.0


@dataclass(frozen=True, slots=True)
class UpOptions:
    """The options of ``mnp up``; None leaves the :class:`HeadConfig` default."""

    host: str = "127.0.0.1"
    port: int = 8750
    nodes: int = 4
    vcpus: int = 4
    memory_mib: int = 4096
    lost_after: float | None = None
    min_timeout: float | None = None
    kill_grace: float | None = None
    mpi_hang: float | None = None
    submit_rate: float | None = None

    def config(self, home: Path) -> HeadConfig:
        """The head-node configuration; ``nodes == 0`` means no local compute environment."""
        local = (
            LocalNodesConfig(nodes=self.nodes, vcpus=self.vcpus, memory_mib=self.memory_mib)
            if self.nodes > 0
            else None
        )
        extra: dict[str, Any] = {}
        if self.lost_after is not None:
            extra["lost_after_seconds"] = self.lost_after
        if self.min_timeout is not None:
            extra["min_timeout_seconds"] = self.min_timeout
        if self.kill_grace is not None:
            extra["kill_grace_seconds"] = self.kill_grace
        if self.mpi_hang is not None:
            extra["mpi_hang_seconds"] = self.mpi_hang
        if self.submit_rate is not None:
            extra["submit_rate_per_second"] = self.submit_rate
        return HeadConfig(home=home, host=self.host, port=self.port, local=local, **extra)

    def argv(self) -> list[str]:
        """These options as ``mnp up`` arguments (for the background child)."""
        args = ["--host", self.host, "--port", str(self.port), "--nodes", str(self.nodes)]
        args += ["--vcpus", str(self.vcpus), "--memory-mib", str(self.memory_mib)]
        for flag, value in (
            ("--lost-after", self.lost_after),
            ("--min-timeout", self.min_timeout),
            ("--kill-grace", self.kill_grace),
            ("--mpi-hang", self.mpi_hang),
            ("--submit-rate", self.submit_rate),
        ):
            if value is not None:
                args += [flag, repr(value)]
        return args


def running_head(home: Path) -> HeadInfo | None:
    """The head node of ``home`` if its head.json names a live process that answers."""
    info = HeadInfo.read(home / "head.json")
    if info is None or not pid_alive(info.pid):
        return None
    try:
        with Client(url=info.url, token=info.token, home=home, timeout=2.0) as client:
            client.status()
    except MnpError:
        return None
    return info


def start_background(
    home: Path, options: UpOptions, deadline: float = START_DEADLINE
) -> tuple[HeadInfo, subprocess.Popen[bytes]]:
    """Spawn a detached head node for ``home`` and return once it answers ``getStatus``.

    Its output goes to ``<home>/head.log``. Raises :class:`MnpError` (with the log's tail) when
    the process exits early or does not answer within ``deadline`` seconds; in the second case
    the process is stopped first.
    """
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "head.log"
    argv = [sys.executable, "-m", "mnp", "--home", str(home), "up", *options.argv()]
    env = dict(os.environ)
    # The child must import this same mnp even when it is run from a source checkout.
    package_root = str(Path(mnp.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    spawned_at = time.time()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        code = proc.poll()
        if code is not None:
            raise MnpError(
                f"the head node exited with code {code} before answering; "
                f"{log_path} ends with:\n{_tail(log_path)}"
            )
        info = _fresh_head_info(home, proc.pid, spawned_at)
        if info is not None:
            try:
                with Client(url=info.url, token=info.token, home=home, timeout=2.0) as client:
                    client.status()
                return info, proc
            except MnpError:
                pass
        time.sleep(0.1)
    stop_process(proc)
    raise MnpError(
        f"the head node did not answer within {deadline:g} s (stopped it); "
        f"{log_path} ends with:\n{_tail(log_path)}"
    )


def _fresh_head_info(home: Path, pid: int, since: float) -> HeadInfo | None:
    """head.json if it was written by the process we spawned (not left by an earlier one)."""
    path = home / "head.json"
    info = HeadInfo.read(path)
    if info is None:
        return None
    try:
        fresh = path.stat().st_mtime >= since - 1.0
    except OSError:
        return None
    return info if info.pid == pid or fresh else None


def head_pid(home: Path) -> int | None:
    """The head node's pid from ``head.pid`` (else ``head.json``), if that process lives."""
    pid: int | None = None
    try:
        pid = int((home / "head.pid").read_text().strip())
    except (OSError, ValueError):
        info = HeadInfo.read(home / "head.json")
        pid = info.pid if info is not None else None
    return pid if pid is not None and pid_alive(pid) else None


def stop_pid(
    pid: int, deadline: float = STOP_DEADLINE, sig: signal.Signals = signal.SIGTERM
) -> bool:
    """Send ``sig`` to ``pid`` and wait for it to exit; False if it still runs after ``deadline``.

    Refuses (``MnpError``) to signal a process whose command line does not mention mnp, so a
    stale pid file never stops an unrelated process that reused the pid.
    """
    cmdline = _cmdline(pid)
    if cmdline is not None and "mnp" not in cmdline:
        raise MnpError(f"pid {pid} is not an mnp head node ({cmdline[:80]!r}); not stopping it")
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def stop_process(
    proc: subprocess.Popen[bytes], deadline: float = STOP_DEADLINE, *, stop_nodes: bool = False
) -> None:
    """Stop a head node this process spawned: SIGTERM (detach) or, with ``stop_nodes``, the
    signal that stops its nodes too; wait, then SIGKILL its process group (its own session,
    so nothing else) if it is still there after ``deadline`` seconds."""
    if proc.poll() is None:
        proc.send_signal(STOP_NODES_SIGNAL if stop_nodes else signal.SIGTERM)
        try:
            proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cmdline(pid: int) -> str | None:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
