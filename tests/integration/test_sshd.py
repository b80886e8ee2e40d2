"""The node's embedded SSH server against the real OpenSSH client (and MPICH's hydra).

Four :class:`NodeSshServer` on 127.0.0.2–5 (free ports) run on one event loop in a
background thread; the tests drive them with ``ssh -F <job ssh_config>`` built by
:mod:`mnp.build.ssh`, from a wiring directory whose name holds spaces, quotes, ``$``, ``;``
and ``%``.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from launcher.sshd import NodeSshServer
from mnp.build.ssh import SshNode, known_hosts, ssh_config
from mnp.scheduler.sshkeys import generate_job_key
from tests.integration.cluster import pid_alive, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client `ssh` not installed"),
]

T = TypeVar("T")
SCOPE_A = "jobA#0/1"
SCOPE_B = "jobB#0/1"
ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


class LoopThread:
    """An asyncio loop in a daemon thread; the tests call into it and block on the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Job:
    """One job's key pair and ssh_config on the client side."""

    dir: Path
    public_key: str
    config: Path

    def ssh(
        self, host: str, command: str, input: bytes | None = None, config: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ssh", "-F", str(config or self.config), host, command],
            input=input,
            capture_output=True,
            timeout=30,
        )

    def popen(self, host: str, command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ssh", "-F", str(self.config), host, command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


@dataclass
class Nodes:
    loop: LoopThread
    servers: list[NodeSshServer]
    ssh_nodes: list[SshNode]
    root: Path
    session_exits: list[tuple[str, str, int]]

    def make_job(self, name: str, key: tuple[str, str] | None = None) -> Job:
        # Hostile on purpose: ssh_config must quote it, and nothing may pass it to a shell.
        job_dir = self.root / f"{name} it's $HOME; 50% dir"
        job_dir.mkdir()
        private, public = key or generate_job_key()
        (job_dir / "id_ed25519").write_text(private)
        (job_dir / "id_ed25519").chmod(0o600)
        (job_dir / "known_hosts").write_text(known_hosts(self.ssh_nodes))
        config = job_dir / "ssh_config"
        config.write_text(
            ssh_config(
                self.ssh_nodes,
                str(job_dir / "id_ed25519"),
                str(job_dir / "known_hosts"),
                user=getpass.getuser(),
            )
        )
        return Job(job_dir, public, config)

    def authorize(self, scope: str, job: Job, nodes: range = range(4)) -> None:
        for i in nodes:
            env = {"MNP_SCOPE": scope}
            self.loop.call(functools.partial(self.servers[i].authorize, scope, job.public_key, env))

    def session_count(self, node: int, scope: str) -> int:
        return self.loop.call(lambda: self.servers[node].session_count(scope))


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    loop = LoopThread()
    servers: list[NodeSshServer] = []
    exits: list[tuple[str, str, int]] = []
    try:
        for i, address in enumerate(ADDRESSES):
            node_dir = tmp_path / f"node{i}"
            (node_dir / "tmp").mkdir(parents=True)
            (node_dir / "shm").mkdir()
            node_env = {
                "MNP_NODE_ID": f"node{i}",
                "MNP_NODE_ADDRESS": address,
                "TMPDIR": str(node_dir / "tmp"),
                "OMPI_MCA_btl_vader_backing_directory": str(node_dir / "shm"),
            }
            server = NodeSshServer(
                address,
                0,
                node_dir / "host_ed25519",
                node_env,
                on_session_exit=lambda *args: exits.append(args),
            )
            servers.append(server)
            loop.run(server.start())
        ssh_nodes = [
            SshNode(f"node{i}", address, s.port, s.host_public_key)
            for i, (address, s) in enumerate(zip(ADDRESSES, servers, strict=True))
        ]
        yield Nodes(loop, servers, ssh_nodes, tmp_path, exits)
    finally:
        for server in servers:
            loop.run(server.close())
        loop.stop()


def read_pid(client: subprocess.Popen[bytes]) -> int:
    assert client.stdout is not None
    line = client.stdout.readline()
    assert line.strip().isdigit(), f"expected a pid, got {line!r} (stderr: {client.stderr})"
    return int(line)


def stop(client: subprocess.Popen[bytes]) -> None:
    if client.poll() is None:
        client.kill()
    client.communicate(timeout=10)  # reaps it and closes its pipes


def test_runs_commands_with_node_and_scope_environment(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    result = job.ssh("node2", "echo $MNP_NODE_ADDRESS $TMPDIR $MNP_SCOPE; echo $SSH_CONNECTION")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.decode().splitlines()
    assert first == f"127.0.0.4 {nodes.root / 'node2' / 'tmp'} {SCOPE_A}"
    client_address, client_port, *server_side = second.split()
    assert client_address.startswith("127.") and client_port.isdigit()
    assert server_side == ["127.0.0.4", str(nodes.servers[2].port)]
    # Per-node host keys: each node answers on its own address with its own key.
    for alias in ("node0", "node1", "node3"):
        assert job.ssh(alias, "echo $MNP_NODE_ID").stdout.decode().strip() == alias


def test_exit_status_stdin_and_large_output_pass_through(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    assert job.ssh("node0", "exit 3").returncode == 3
    assert job.ssh("node0", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    echoed = job.ssh("node1", "cat; echo done >&2", input=b"hello\nworld\n")
    assert (echoed.returncode, echoed.stdout, echoed.stderr) == (0, b"hello\nworld\n", b"done\n")
    big = job.ssh("node1", "seq 1 300000; exit 5")
    assert big.returncode == 5
    assert big.stdout == "".join(f"{i}\n" for i in range(1, 300001)).encode()
    shell = subprocess.run(
        ["ssh", "-F", str(job.config), "node1"], input=b"", capture_output=True, timeout=30
    )
    assert shell.returncode == 1 and b"only commands" in shell.stderr


def test_session_exit_hook_reports_own_exits(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    assert job.ssh("node3", "exit 7").returncode == 7
    wait_for("the exit hook", lambda: (SCOPE_A, "exit 7", 7) in nodes.session_exits)
    # The hook fires when the shell exits, even while a child it left holds the session's
    # stdout open (the session itself lasts until then, as with OpenSSH).
    command = "sleep 30 & echo $!; exit 9"
    client = job.popen("node3", command)
    try:
        sleeper = read_pid(client)
        wait_for("the exit hook", lambda: (SCOPE_A, command, 9) in nodes.session_exits)
        assert client.poll() is None and pid_alive(sleeper)
    finally:
        stop(client)
    wait_for("the leftover sleep to die", lambda: not pid_alive(sleeper), timeout=10)


def test_only_authorized_keys_of_live_scopes_get_in(nodes: Nodes) -> None:
    job_a = nodes.make_job("a")
    job_b = nodes.make_job("b")
    stranger = nodes.make_job("stranger")
    nodes.authorize(SCOPE_A, job_a)
    nodes.authorize(SCOPE_B, job_b, range(1))  # job B runs on node0 only
    assert job_b.ssh("node0", "echo $MNP_SCOPE").stdout.decode().strip() == SCOPE_B
    assert job_a.ssh("node0", "echo $MNP_SCOPE").stdout.decode().strip() == SCOPE_A
    for job, host in [(job_b, "node1"), (stranger, "node0")]:
        refused = job.ssh(host, "echo in")
        assert refused.returncode == 255
        assert b"Permission denied" in refused.stderr
        assert refused.stdout == b""


def test_revoke_refuses_the_key_and_kills_running_sessions(nodes: Nodes) -> None:
    job_a = nodes.make_job("a")
    job_b = nodes.make_job("b")
    nodes.authorize(SCOPE_A, job_a)
    nodes.authorize(SCOPE_B, job_b)
    client_a = job_a.popen("node1", "echo $$; exec sleep 30")
    client_b = job_b.popen("node1", "echo $$; exec sleep 30")
    try:
        pid_a, pid_b = read_pid(client_a), read_pid(client_b)
        wait_for("session A", lambda: nodes.session_count(1, SCOPE_A) == 1)
        nodes.loop.call(lambda: nodes.servers[1].revoke(SCOPE_A))
        wait_for("the revoked session's sleep to die", lambda: not pid_alive(pid_a), timeout=10)
        assert client_a.wait(10) != 0
        refused = job_a.ssh("node1", "true")
        assert refused.returncode == 255 and b"Permission denied" in refused.stderr
        # The other job is untouched, on this node, and job A still works elsewhere.
        assert pid_alive(pid_b) and client_b.poll() is None
        assert job_a.ssh("node2", "true").returncode == 0
        # Sessions the server killed are not reported as exits.
        assert [(s, c) for s, c, _ in nodes.session_exits if s == SCOPE_A] == [(SCOPE_A, "true")]
    finally:
        stop(client_a)
        stop(client_b)


def test_revoke_escalates_to_sigkill_after_the_grace_period(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    client = job.popen("node2", "trap '' TERM; echo $$; exec sleep 30")  # sleep ignores TERM too
    try:
        pid = read_pid(client)
        revoked = time.monotonic()
        nodes.loop.call(lambda: nodes.servers[2].revoke(SCOPE_A))
        wait_for("the TERM-proof sleep to die", lambda: not pid_alive(pid), timeout=10)
        assert time.monotonic() - revoked >= 1.5  # it took the SIGKILL, 2 s after the SIGTERM
    finally:
        stop(client)


def test_revoke_kills_background_leftovers_of_finished_sessions(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    result = job.ssh("node0", "sleep 30 >/dev/null 2>&1 </dev/null & echo $!")
    assert result.returncode == 0, result.stderr
    leftover = int(result.stdout)
    assert pid_alive(leftover)
    nodes.loop.call(lambda: nodes.servers[0].revoke(SCOPE_A))
    wait_for("the leftover sleep to die", lambda: not pid_alive(leftover), timeout=10)


def test_wrong_host_key_is_refused(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    _, impostor_key = generate_job_key()
    lying = [
        SshNode(n.alias, n.address, n.port, impostor_key if n.alias == "node1" else n.host_key)
        for n in nodes.ssh_nodes
    ]
    (job.dir / "known_hosts").write_text(known_hosts(lying))
    refused = job.ssh("node1", "echo in")
    assert refused.returncode == 255
    assert b"Host key verification failed" in refused.stderr
    assert job.ssh("node0", "echo in").stdout == b"in\n"


def test_known_hosts_is_matched_on_address_and_port_not_alias(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    node = nodes.ssh_nodes[0]
    key = " ".join(node.host_key.split()[:2])
    (job.dir / "known_hosts").write_text(f"[{node.alias}]:{node.port} {key}\n{node.alias} {key}\n")
    assert job.ssh("node0", "true").returncode == 255
    (job.dir / "known_hosts").write_text(f"[{node.address}]:{node.port} {key}\n")
    assert job.ssh("node0", "true").returncode == 0


def test_client_disconnect_kills_the_process_group(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    client = job.popen("node3", "sleep 30 & echo $!; wait")
    try:
        sleeper = read_pid(client)
        assert pid_alive(sleeper)
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        wait_for("the remote sleep to die", lambda: not pid_alive(sleeper), timeout=10)
        wait_for("the session to end", lambda: nodes.session_count(3, SCOPE_A) == 0)
    finally:
        stop(client)


def test_close_kills_every_session(nodes: Nodes) -> None:
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    client = job.popen("node2", "echo $$; exec sleep 30")
    try:
        pid = read_pid(client)
        nodes.loop.run(nodes.servers[2].close())
        assert not pid_alive(pid)
        assert client.wait(10) != 0
    finally:
        stop(client)


def test_host_key_is_kept_across_restarts_and_private(nodes: Nodes) -> None:
    key_path = nodes.root / "node0" / "host_ed25519"
    assert key_path.stat().st_mode & 0o777 == 0o600
    again = NodeSshServer("127.0.0.2", 0, key_path, {})
    nodes.loop.run(again.start())
    try:
        assert again.host_public_key == nodes.servers[0].host_public_key
        assert again.port != nodes.servers[0].port
    finally:
        nodes.loop.run(again.close())


def _mpich_mpiexec() -> str | None:
    """The PyPI ``mpich`` wheel's mpiexec (hydra), if installed next to this Python."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(directory, "mpiexec")
        if os.access(candidate, os.X_OK):
            version = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=30
            )
            if "HYDRA" in version.stdout:
                return candidate
    return None


MPIEXEC = _mpich_mpiexec()


@pytest.mark.skipif(MPIEXEC is None, reason="MPICH mpiexec (pip install mpich) not installed")
def test_mpich_hydra_launches_ranks_on_two_nodes(nodes: Nodes) -> None:
    assert MPIEXEC is not None
    job = nodes.make_job("a")
    nodes.authorize(SCOPE_A, job)
    # Hydra pastes ``--launcher-exec <path>`` unquoted into the remote proxy's command line,
    # so the wrapper itself needs a shell-safe path (the ssh_config it points at does not).
    wrapper = nodes.root / "mnp-ssh"
    wrapper.write_text(f'#!/bin/sh\nexec ssh -F {shlex.quote(str(job.config))} "$@"\n')
    wrapper.chmod(0o700)
    hostfile = job.dir / "hostfile"
    hostfile.write_text("node0:2\nnode1:2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MNP_", "HYDRA_", "PMI"))}
    result = subprocess.run(
        [
            MPIEXEC,
            "-f",
            str(hostfile),
            "-n",
            "4",
            "-launcher",
            "ssh",
            "-launcher-exec",
            str(wrapper),
            "-iface",
            "lo",
            "sh",
            "-c",
            "echo $MNP_NODE_ADDRESS",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]
