"""Node agents the harness starts itself (an UNMANAGED environment's nodes), dialing the head
through a proxy; each can be killed and restarted under its id, or frozen and thawed.

Every process is tracked by PID and ended by PID (:meth:`Fleet.close`), also on failure: the
agents, and whatever their jobs left behind (found by ``MNP_NODE_ROOT`` in their environment).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from mnp.providers.local import sweep

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Agent:
    node_id: str
    argv: list[str]
    env: dict[str, str]
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    frozen_until: float | None = None

    def start(self) -> None:
        with open(self.root / "agent-test.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.root,
            )  # fmt: skip

    def kill9(self) -> None:
        """SIGKILL the agent alone (a crash: its jobs' processes are not touched)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


class Fleet:
    """``count`` agents of environment ``ce``, ``vcpus`` each, at 127.0.0.(10+i)."""

    def __init__(
        self, base: Path, head_url: str, token: str, ce: str, count: int, vcpus: int
    ) -> None:
        self.agents: dict[str, Agent] = {}
        env = {**os.environ, "MNP_AGENT_TOKEN": token, "PYTHONPATH": str(ROOT)}
        env.pop("MNP_JOIN_TOKEN", None)
        for i in range(count):
            node_id = f"fault-{i}"
            root = base / node_id
            root.mkdir(parents=True)
            argv = [
                sys.executable, "-m", "launcher.agent", "--head", head_url,
                "--node-id", node_id, "--compute-environment", ce,
                "--address", f"127.0.0.{10 + i}", "--vcpus", str(vcpus),
                "--memory-mib", "4096", "--root", str(root),
            ]  # fmt: skip
            self.agents[node_id] = Agent(node_id, argv, env, root)

    def start(self) -> None:
        for agent in self.agents.values():
            agent.start()

    def restart(self, node_id: str) -> None:
        """kill -9 the node's agent and start it again: same id, root, head and token."""
        agent = self.agents[node_id]
        agent.kill9()
        agent.start()

    def freeze(self, node_id: str, seconds: float) -> None:
        """SIGSTOP the node's agent; :meth:`tend` sends SIGCONT after ``seconds``."""
        agent = self.agents[node_id]
        assert agent.proc is not None
        os.kill(agent.proc.pid, signal.SIGSTOP)
        agent.frozen_until = time.monotonic() + seconds

    def frozen(self) -> list[str]:
        return [a.node_id for a in self.agents.values() if a.frozen_until is not None]

    def tend(self) -> list[str]:
        """Thaw agents whose freeze is over; start again any agent that exited (one the head
        declared lost exits, and rejoins as a new session when restarted). Returns the node
        ids started again."""
        restarted = []
        now = time.monotonic()
        for a in self.agents.values():
            assert a.proc is not None
            if a.frozen_until is not None and now >= a.frozen_until:
                os.kill(a.proc.pid, signal.SIGCONT)
                a.frozen_until = None
            if a.frozen_until is None and a.proc.poll() is not None:
                a.start()
                restarted.append(a.node_id)
        return restarted

    def close(self) -> None:
        """End every agent this fleet started, by PID, and the job processes they left.
        (Earlier agents of a node were reaped when they were killed or seen to exit.)"""
        for a in self.agents.values():
            if a.proc is not None and a.proc.poll() is None:
                os.kill(a.proc.pid, signal.SIGCONT)
                a.proc.kill()
                a.proc.wait(10)
            sweep(a.root)
