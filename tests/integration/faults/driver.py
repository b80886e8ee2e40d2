"""The harness's loop: submit the planned jobs at a steady pace while the seeded schedule of
faults plays out, then wait for every job to end. One thread does it all, step by step; the
proxies run on threads of their own."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mnp.client.client import Client
from mnp.errors import MnpError
from tests.integration.cluster import Cluster
from tests.integration.faults.fleet import Fleet
from tests.integration.faults.proxy import Message
from tests.integration.faults.workload import QUEUE, Planned
from tests.unit.test_durable import fill

FAULTS = {"head_kill": 2, "agent_restart": 2, "freeze": 1, "disk_fill": 1}
FREEZE_SECONDS = 5.5
"""Longer than the head's lost_after (4 s in the harness): the node is declared lost."""
DISK_FULL_SECONDS = (1.0, 2.0)


def schedule(rng: random.Random, span: float) -> list[tuple[float, str]]:
    """Each fault of :data:`FAULTS` once per count, in a seeded order, one per slot of
    ``span`` seconds (a jittered time in the slot's first half, so one fault is over before
    the next begins)."""
    kinds = [k for k, n in FAULTS.items() for _ in range(n)]
    rng.shuffle(kinds)
    slot = span / len(kinds)
    return [(slot * (i + rng.uniform(0.1, 0.5)), k) for i, k in enumerate(kinds)]


class HeadKiller:
    """``on_reply`` of the client-side proxy: once armed, SIGKILLs the head as the head's
    answer to a SubmitJob goes by (so the job is committed) and swallows the answer."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.armed = threading.Event()
        self.kills = 0

    def __call__(self, request: Message, reply: Message) -> bool:
        if not (self.armed.is_set() and request.path == b"/api/v1/submitJob"):
            return False
        if reply.status != 200:
            return False
        assert self.cluster.proc is not None
        os.kill(self.cluster.proc.pid, signal.SIGKILL)
        self.armed.clear()
        self.kills += 1
        return True


@dataclass
class Driver:
    cluster: Cluster
    fleet: Fleet
    submitter: Client
    """Talks to the head through the proxy that kills it."""
    killer: HeadKiller
    disk: Path
    rng: random.Random
    counts: Counter[str] = field(default_factory=Counter)
    job_ids: dict[str, str] = field(default_factory=dict)
    """Planned name → the job id the head answered (after retries with the same token)."""
    long_names: set[str] = field(default_factory=set)
    """Names of the planned jobs that run for seconds (the agent faults' preferred victims)."""
    _filler: Path | None = None
    _filled_until: float = 0.0

    def run(self, planned: list[Planned], span: float) -> None:
        """Submit ``planned`` evenly over ``span`` seconds while the faults happen."""
        faults = schedule(self.rng, span)
        self.long_names = {p.name for p in planned if p.kind == "sleep"}
        t0 = time.monotonic()
        for i, job in enumerate(planned):
            due = t0 + span * i / len(planned)
            while time.monotonic() < due:
                self._step(faults, t0)
                time.sleep(0.01)
            self._step(faults, t0)
            self._submit(job)
        while faults or self._filler is not None or self.fleet.frozen():
            self._step(faults, t0)
            time.sleep(0.05)

    def _step(self, faults: list[tuple[float, str]], t0: float) -> None:
        """Start the faults that are due, end those that are over, restart what died."""
        if faults and time.monotonic() - t0 >= faults[0][0]:
            self._begin(faults.pop(0)[1])
        if self._filler is not None and time.monotonic() >= self._filled_until:
            self._filler.unlink()
            self._filler = None
        self.counts["agent_rejoins"] += len(self.fleet.tend())
        self._heal_head()

    def _begin(self, kind: str) -> None:
        if kind == "head_kill":
            self.killer.armed.set()  # the next SubmitJob's answer kills the head
        elif kind == "agent_restart":
            self.fleet.restart(self._victim())
        elif kind == "freeze":
            self.fleet.freeze(self._victim(), FREEZE_SECONDS)
        elif kind == "disk_fill":
            self._filler = fill(self.disk)
            self._filled_until = time.monotonic() + self.rng.uniform(*DISK_FULL_SECONDS)
        self.counts[kind] += 1

    def _victim(self) -> str:
        """A node for an agent fault, seeded: one running a long job if any (so the fault
        bites: its work must neither be lost nor run twice), else any unfrozen node."""
        nodes = sorted(n for n in self.fleet.agents if n not in self.fleet.frozen())
        busy: set[str] = set()
        try:
            running = self.cluster.client.list_jobs(queue=QUEUE, status="RUNNING")
            long_ids = [j["jobId"] for j in running if j["jobName"] in self.long_names]
            described = self.cluster.client.describe_jobs(long_ids)
            busy = {str(d["nodeId"]) for d in described if d.get("nodeId")}
        except MnpError:  # a head just restarted may not answer yet: any node will do
            pass
        return self.rng.choice(sorted(busy & set(nodes)) or nodes)

    def _heal_head(self) -> None:
        """Start the head again on its home when the killer (or anything) ended it."""
        c = self.cluster
        if c.proc is not None and c.proc.poll() is not None:
            c.restart()

    def _submit(self, job: Planned) -> None:
        """Submit until the head answers, always with the job's token: a retry after a lost
        answer, a dead head or a full disk returns the job the first try made."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self.job_ids[job.name] = self.submitter.submit(job.request(), job.token)
                return
            except MnpError as exc:
                self.counts["submit_retries"] += 1
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not submit {job.name}: {exc}") from exc
                self._step([], 0.0)
                time.sleep(0.05)
