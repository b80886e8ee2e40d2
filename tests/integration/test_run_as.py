"""Attempts with ``runAs`` on root node agents (issue 11), end to end on the node side.

Two nodes, each a real :class:`launcher.attempts.Attempts` with its real SSH server on its
own loopback address, are handed the Assignments the head would send (the wiring built by
the head's own builders, the key by its key maker): a 2-node MPI gang (Debian's Open MPI
``mpirun`` through ``launcher.wire``, pinned to ``lo``) whose ranks on both nodes run as the
account, and a plain attempt. The accounts are real (see tests/unit/run_as_accounts.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.attempt import attempt_dir_for
from launcher.attempts import Attempts
from launcher.gangfiles import wiring_dir
from launcher.sshd import NodeSshServer
from mnp.build.multinode import GangNode, mpi_environment, wiring_files
from mnp.scheduler.sshkeys import generate_job_key
from mnp.spec.containers import ContainerRun
from mnp.spec.environments import Node, NodeStatus
from mnp.spec.protocol import PYTHON_PLACEHOLDER, WIRING_PLACEHOLDER, Assignment, Event, Wiring
from mnp.spec.resources import Resources
from tests.integration.cluster import free_port
from tests.unit.run_as_accounts import made_accounts, reachable_dir

pytestmark = pytest.mark.integration
W = WIRING_PLACEHOLDER
needs_openmpi = pytest.mark.skipif(
    shutil.which("mpirun") is None or not os.path.exists("/usr/bin/orted"),
    reason="needs Debian's Open MPI (mpirun, orted)",
)


@pytest.fixture(scope="module")
def alice() -> Iterator[int]:
    with made_accounts() as accounts:
        yield accounts["mnpt-alice"].pw_uid


class FakeNode:
    """One node's agent side: its Attempts and SSH server, and the events they report."""

    def __init__(self, base: Path, node_id: str, address: str) -> None:
        self.node_id, self.address = node_id, address
        self.root = base / node_id
        self.root.mkdir(mode=0o700)
        self.events: list[Event] = []
        env = {**os.environ, "MNP_NODE_ID": node_id}
        self.attempts = Attempts(self.root, node_id, address, env, self._sink)
        node_env = {"MNP_NODE_ID": node_id, "MNP_NODE_ADDRESS": address}
        self.ssh = NodeSshServer(address, free_port(), self.root / "ssh_host_key", node_env)
        self.attempts.ssh = self.ssh

    def _sink(self, event: Event) -> None:
        self.events.append(event)
        if event.kind in ("exited", "start_failed"):
            self.attempts.ended(event.attempt_id)

    def ended(self, attempt_id: str) -> Event | None:
        return next(
            (
                e
                for e in self.events
                if e.attempt_id == attempt_id and e.kind in ("exited", "start_failed")
            ),
            None,
        )

    def output(self, attempt_id: str, stream: str = "stdout") -> str:
        found = [e for e in self.events if e.attempt_id == attempt_id and e.kind == "log"]
        return "".join(e.data for e in found if e.stream == stream)

    def as_gang_node(self, index: int) -> GangNode:
        node = Node(
            self.node_id,
            "ce",
            self.address,
            Resources(1.0, 512),
            NodeStatus.ACTIVE,
            ssh_port=self.ssh.port,
            ssh_host_key=self.ssh.host_public_key,
        )
        return GangNode(index, node)


async def until_ended(node: FakeNode, attempt_id: str, timeout: float = 30.0) -> Event:
    deadline = time.monotonic() + timeout
    while (done := node.ended(attempt_id)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{attempt_id} on {node.node_id} never ended: {node.events}")
        node.attempts.read_logs()
        await asyncio.sleep(0.02)
    return done


def gang_assignments(main: FakeNode, worker: FakeNode, rank_cmd: str) -> list[Assignment]:
    """What the head sends the two nodes of a 2-node Open MPI job run as ``mnpt-alice``."""
    gang = [main.as_gang_node(0), worker.as_gang_node(1)]
    private, public = generate_job_key("mnp-gang-1")
    env = {
        **mpi_environment("lo"),
        "MNP_WIRING_DIR": W, "MNP_NODE_ALIASES": f"{main.node_id} {worker.node_id}",
        "MNP_NUM_NODES": "2", "MNP_TASKS_PER_NODE": "1", "MNP_MPI_IFACE": "lo",
        "MNP_HOSTFILE": f"{W}/hostfile", "MNP_SSH_CONFIG": f"{W}/ssh_config",
    }  # fmt: skip
    command = [
        PYTHON_PLACEHOLDER, "-m", "launcher.wire", "--mpi", "openmpi", "--ready-timeout", "20",
        "--ready-file", f"{W}/ready", "--no-probe", "--", "sh", "-c", rank_cmd,
    ]  # fmt: skip
    files = wiring_files(gang, [1, 1], private, 0)
    out = []
    for i, cmd in ((0, command), (1, [])):
        wiring = Wiring(public, files if i == 0 else {}, dict(env), hold=not cmd)
        out.append(
            Assignment(
                attempt_id=f"gang-1#{i}/1",
                job_id=f"gang-1#{i}",
                attempt=1,
                command=cmd,
                environment=dict(env),
                timeout_seconds=60,
                kill_grace_seconds=1.0,
                wiring=wiring,
                run_as="mnpt-alice",
            )
        )
    return out


@needs_openmpi
def test_an_mpi_gang_of_two_nodes_runs_its_ranks_as_the_account(alice: int) -> None:
    rank = "echo rank=$OMPI_COMM_WORLD_RANK uid=$(id -u) node=$MNP_NODE_ID"

    async def scenario() -> tuple[FakeNode, FakeNode, Event, list[int]]:
        with reachable_dir() as base:
            main = FakeNode(base, "node-a", "127.0.0.2")
            worker = FakeNode(base, "node-b", "127.0.0.3")
            try:
                await main.ssh.start()
                await worker.ssh.start()
                first, second = gang_assignments(main, worker, rank)
                main.attempts.start(first)
                worker.attempts.start(second)
                # the head's Ready once every node started; meanwhile look at the key's file
                key = wiring_dir(attempt_dir_for(first, main.root)) / "id_ed25519"
                st = key.stat()
                main.attempts.mark_ready(first.attempt_id)
                done = await until_ended(main, first.attempt_id)
                worker.attempts.kill(second.attempt_id, "gang done")
                await until_ended(worker, second.attempt_id, 10)
                return main, worker, done, [st.st_uid, stat.S_IMODE(st.st_mode)]
            finally:
                main.attempts.close()
                worker.attempts.close()
                await main.ssh.close()
                await worker.ssh.close()

    main, _, done, key = asyncio.run(scenario())
    text = main.output("gang-1#0/1")
    assert done.exit_code == 0, (text, main.output("gang-1#0/1", "stderr"))
    ranks = sorted(re.findall(r"rank=(\d) uid=(\d+) node=(\S+)", text))
    assert ranks == [("0", str(alice), "node-a"), ("1", str(alice), "node-b")], text
    assert key == [alice, 0o600]


def test_a_plain_attempt_runs_as_the_account_and_an_unknown_one_fails(alice: int) -> None:
    async def scenario() -> FakeNode:
        with reachable_dir() as base:
            node = FakeNode(base, "node-a", "127.0.0.2")
            try:
                for name, who in (("plain", "mnpt-alice"), ("ghost", "mnpt-ghost")):
                    node.attempts.start(
                        Assignment(
                            attempt_id=f"{name}/1",
                            job_id=name,
                            attempt=1,
                            command=["sh", "-c", "id -u"],
                            environment={},
                            timeout_seconds=10,
                            kill_grace_seconds=0.5,
                            run_as=who,
                        )
                    )
                    await until_ended(node, f"{name}/1")
                return node
            finally:
                node.attempts.close()

    node = asyncio.run(scenario())
    assert node.output("plain/1") == f"{alice}\n"
    ghost = node.ended("ghost/1")
    assert ghost is not None and ghost.reason == (
        "CannotStartContainerError: no account mnpt-ghost on node node-a"
    )


@pytest.mark.docker
def test_a_container_without_a_user_runs_as_the_account(alice: int, docker_engine: Any) -> None:
    script = "id -u; touch /mnp/work/made"

    async def scenario() -> tuple[FakeNode, int]:
        with reachable_dir() as base:
            node = FakeNode(base, "node-a", "127.0.0.2")
            a = Assignment(
                attempt_id="boxed/1", job_id="boxed", attempt=1, command=["sh", "-c", script],
                environment={}, timeout_seconds=30, kill_grace_seconds=0.5, run_as="mnpt-alice",
                container=ContainerRun(image=docker_engine.images["base"]),
            )  # fmt: skip
            try:
                node.attempts.start(a)
                await until_ended(node, a.attempt_id, 60)
                return node, (attempt_dir_for(a, node.root) / "made").stat().st_uid
            finally:
                node.attempts.close()
                node.attempts.close_engine()

    node, owner = asyncio.run(scenario())
    assert node.output("boxed/1") == f"{alice}\n", node.events
    assert owner == alice
