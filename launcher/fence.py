"""The node's fence: one small watchdog process per agent that stops the node's work when the
agent's lease runs out, whether or not the agent itself is alive (issue 11).

Run as ``python -m launcher.fence`` with a pipe on stdin, started by the agent
(:mod:`launcher.lease`). The agent writes one command a line:

- ``lease <deadline>``: the agent's lease now ends at ``deadline``, seconds of
  ``CLOCK_MONOTONIC`` (one clock for every process of the machine);
- ``+group <pgid>`` / ``-group <pgid>``: a process group (an attempt's, an SSH session's) to
  fence, or no longer;
- ``+container <name>`` / ``-container <name>``: a Docker container likewise;
- ``kill``: the head has ended the agent's session: SIGKILL everything fenced now.

Decisions:

- **At the deadline** without a newer lease the fence *stops* the work: SIGSTOP to every group,
  ``docker pause`` of every container. A stopped process runs no code, so once the head
  retries the work elsewhere (it waits ``lost_after - lease`` seconds longer than the agent's
  lease, from a later clock start) nothing of the first run proceeds. The agent cannot tell a
  cut link from a head that only stalled (a slow disk, a restart, an upgrade): a head that
  stalled never declared the node lost, so when a newer lease comes the fence resumes the work
  (SIGCONT, ``docker unpause``) and nothing was lost. When the agent learns that its session
  ended (409 stale / 410 from the head) it sends ``kill``: the stopped work is SIGKILLed
  without grace (the head retried it already).
- **EOF** on the pipe means the agent died (nobody is left to renew or to report): SIGKILL
  every group and ``docker kill`` every container at once, then exit.
- A line that does not parse is ignored (reported on stderr); the fence never crashes on its
  input. Groups that have emptied are forgotten (checked at least every second), so a reused
  group id is never signalled long after its group ended.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

from launcher.pgroups import group_alive

PRUNE_SECONDS = 1.0
"""How often groups that emptied are forgotten."""
DOCKER_TIMEOUT_SECONDS = 10.0
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
"""A Docker container name (what ``docker`` itself accepts)."""

Verb = Literal["lease", "+group", "-group", "+container", "-container", "kill"]


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed line of the agent's pipe."""

    verb: Verb
    deadline: float = 0.0
    pgid: int = 0
    name: str = ""


def parse_line(line: str) -> Command | None:
    """The command on one line, or None when it is not one (never raises)."""
    parts = line.split()
    if parts == ["kill"]:
        return Command("kill")
    if len(parts) != 2:
        return None
    verb, arg = parts
    if verb == "lease":
        try:
            deadline = float(arg)
        except ValueError:
            return None
        return Command("lease", deadline=deadline) if deadline == deadline else None  # NaN
    if verb in ("+group", "-group"):
        if not arg.isdigit() or not 1 < int(arg) < 2**31:  # never group 0/1: ourselves, init
            return None
        return Command(verb, pgid=int(arg))  # type: ignore[arg-type]  # checked just above
    if verb in ("+container", "-container") and NAME_RE.fullmatch(arg):
        return Command(verb, name=arg)  # type: ignore[arg-type]  # checked just above
    return None


@dataclass
class Fence:
    """What the fence holds and the state it is in; signals go through :meth:`signal_groups`
    and :meth:`docker` (a test may replace them)."""

    deadline: float | None = None
    """The lease's end (monotonic seconds); None: no lease yet (nothing runs then)."""
    groups: set[int] = field(default_factory=set)
    containers: set[str] = field(default_factory=set)
    stopped: bool = False
    """The lease ran out and the work is stopped (until a newer lease or a kill)."""

    def apply(self, cmd: Command, now: float) -> None:
        """One command from the agent."""
        match cmd.verb:
            case "lease":
                self.deadline = cmd.deadline
                if self.stopped and cmd.deadline > now:
                    self.stopped = False
                    self.signal_groups(self.groups, signal.SIGCONT)
                    self.docker("unpause", self.containers)
            case "+group":
                self.groups.add(cmd.pgid)
                if self.stopped:  # work started past the lease is stopped too
                    self.signal_groups({cmd.pgid}, signal.SIGSTOP)
            case "-group":
                self.groups.discard(cmd.pgid)
            case "+container":
                self.containers.add(cmd.name)
            case "-container":
                self.containers.discard(cmd.name)
            case "kill":
                self.kill_all()

    def check(self, now: float) -> None:
        """Stop the work if the lease ran out (once)."""
        if self.deadline is not None and now >= self.deadline and not self.stopped:
            self.stopped = True
            print(f"fence: lease expired; stopping {self.describe()}", file=sys.stderr)
            self.signal_groups(self.groups, signal.SIGSTOP)
            self.docker("pause", self.containers)

    def kill_all(self) -> None:
        """SIGKILL every group, kill every container; forget them."""
        if self.groups or self.containers:
            print(f"fence: killing {self.describe()}", file=sys.stderr)
        self.signal_groups(self.groups, signal.SIGKILL)
        self.docker("kill", self.containers)
        self.docker("unpause", self.containers)  # a paused container dies once thawed
        self.docker("kill", self.containers)
        self.groups.clear()
        self.containers.clear()

    def prune(self) -> None:
        """Forget groups that have no process left."""
        self.groups = {g for g in self.groups if group_alive(g)}

    def describe(self) -> str:
        return f"groups {sorted(self.groups)}, containers {sorted(self.containers)}"

    def signal_groups(self, groups: set[int], sig: int) -> None:
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)

    def docker(self, verb: str, names: set[str]) -> None:
        docker = shutil.which("docker")
        if docker is None or not names:
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [docker, verb, *sorted(names)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=DOCKER_TIMEOUT_SECONDS,
                check=False,
            )


def run(fd: int, fence: Fence | None = None) -> Fence:
    """Serve the pipe ``fd`` until EOF, then kill everything; returns the fence (for tests)."""
    fence = fence or Fence()
    buffer = b""
    next_prune = time.monotonic() + PRUNE_SECONDS
    while True:
        now = time.monotonic()
        wake = next_prune if fence.deadline is None or fence.stopped else fence.deadline
        readable, _, _ = select.select([fd], [], [], max(0.0, min(wake, next_prune) - now))
        if readable:
            try:
                chunk = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not chunk:
                fence.kill_all()
                return fence
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                cmd = parse_line(raw.decode("ascii", "replace"))
                if cmd is None:
                    print(f"fence: ignoring {raw[:200]!r}", file=sys.stderr)
                else:
                    fence.apply(cmd, time.monotonic())
        now = time.monotonic()
        fence.check(now)
        if now >= next_prune:
            fence.prune()
            next_prune = now + PRUNE_SECONDS


def main() -> int:
    """``python -m launcher.fence``: serve stdin; SIGTERM/SIGINT/SIGHUP are ignored (only EOF
    or SIGKILL end the fence: a signal meant for the agent's group must not disarm it)."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    run(sys.stdin.fileno())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
