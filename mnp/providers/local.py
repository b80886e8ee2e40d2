"""The local provider: node agents as processes on this machine, one loopback address each."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mnp.config import HEAD_URL_FILE, PRIVATE_FILE_MODE, job_umask, private_dir
from mnp.errors import ProviderError
from mnp.spec.containers import CONTAINER_LABEL_ROOT
from mnp.spec.environments import Node
from mnp.spec.protocol import JOIN_TOKEN_ENV

log = logging.getLogger(__name__)


class LocalProvider:
    """Starts ``python -m launcher.agent`` per node, in its own session.

    Agents are detached (own session) so they outlive the head node — crashed, or stopped
    without ``--stop-nodes`` — and keep running their jobs; a restarted head node adopts them
    through :meth:`is_alive` (pid + command line), and they reconnect by themselves: each is
    given ``--head-file <home>/head.url``, which every head rewrites at start, and re-reads it
    when the head stops answering, so the next head may listen on another port.

    Each node's root (``<home>/nodes/<node id>``: the agent's log, pid, SSH host key and the
    attempts' directories) is mode 0700 and its log 0600: it holds jobs' outputs and keys.
    Agents start with the umask the head was started with (:func:`mnp.config.job_umask`),
    which their jobs inherit, not the head's private one.

    Each agent gets its node's one-time join token (``node.join_token``, minted by the head)
    in ``$MNP_JOIN_TOKEN`` — never on its command line, which every local user can read; the
    token is forgotten here once the agent is started.
    """

    def __init__(self, head_url: str, home: Path, token: str | None) -> None:
        self.head_url = head_url
        self.home = home
        self.token = token
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def node_root(self, node: Node) -> Path:
        return self.home / "nodes" / node.node_id

    def launch(self, node: Node) -> int | None:
        root = private_dir(self.node_root(node))
        argv = [
            sys.executable,
            "-m",
            "launcher.agent",
            "--head",
            self.head_url,
            "--head-file",
            str(self.home / HEAD_URL_FILE),
            "--node-id",
            node.node_id,
            "--compute-environment",
            node.compute_environment,
            "--address",
            node.address,
            "--vcpus",
            str(int(node.capacity.vcpus)),
            "--memory-mib",
            str(node.capacity.memory_mib),
            "--gpus",
            str(node.capacity.gpus),
            "--root",
            str(root),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_source_root(), env.get("PYTHONPATH")]))
        if self.token:
            env["MNP_AGENT_TOKEN"] = self.token
        env.pop(JOIN_TOKEN_ENV, None)  # never a token the head itself was started with
        if node.join_token:
            env[JOIN_TOKEN_ENV] = node.join_token
        umask = job_umask()
        try:
            fd = os.open(
                root / "agent.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE
            )
            with os.fdopen(fd, "ab") as log:
                os.fchmod(fd, PRIVATE_FILE_MODE)
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                    cwd=root,
                    umask=-1 if umask is None else umask,
                )
        except OSError as e:
            raise ProviderError(
                f"could not start agent for {node.node_id}: {e}", node.node_id
            ) from e
        node.join_token = None  # only its hash stays (the node record's join_hash)
        self._children[proc.pid] = proc
        return proc.pid

    def is_alive(self, node: Node) -> bool:
        pid = node.pid
        if pid is None:
            return False
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and node.node_id.encode() in cmdline and b"launcher.agent" in cmdline

    def stop(self, nodes: list[Node], grace_seconds: float) -> None:
        alive = [n for n in nodes if self.is_alive(n)]
        for n in alive:
            _signal(n.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while alive and time.monotonic() < deadline:
            alive = [n for n in alive if self.is_alive(n)]
            if alive:
                time.sleep(0.05)
        for n in alive:
            _signal(n.pid, signal.SIGKILL)
        for n in nodes:
            sweep(self.node_root(n))
            remove_leftover_containers(self.node_root(n))
        for n in nodes:
            child = self._children.pop(n.pid or -1, None)
            if child is not None:
                try:
                    child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass


def sweep(root: Path) -> list[int]:
    """SIGKILL the process groups of every process a node's jobs left behind.

    Job processes carry ``MNP_NODE_ROOT=<root>`` in their environment (set by the agent); an
    agent that was killed cannot stop them itself. Returns the pids found.
    """
    marker = b"MNP_NODE_ROOT=" + str(root).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ + b"\0":
            pid = int(entry.name)
            found.append(pid)
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                _signal(pid, signal.SIGKILL)
    return found


def _source_root() -> str | None:
    """Where the ``launcher`` package lives, so agents import it even from a source tree."""
    spec = importlib.util.find_spec("launcher")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent.parent)


def _signal(pid: int | None, sig: signal.Signals) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def remove_leftover_containers(node_root: Path) -> list[str]:
    """Remove (force) every container of the node whose agent directory is ``node_root``:
    what a node's agent left when it was killed (a lost node's agent never comes back to
    remove them itself). Returns their names. Does nothing, quickly, when no Docker engine is
    configured (``DOCKER_HOST`` unset and no ``/var/run/docker.sock``) or the docker SDK is
    missing; engine errors are logged, never raised. Blocking."""
    if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
        return []
    try:
        import docker
    except ImportError:
        return []
    removed: list[str] = []
    try:
        api = docker.APIClient(version="auto", timeout=10, **docker.utils.kwargs_from_env())
        mine = {"label": f"{CONTAINER_LABEL_ROOT}={node_root}"}
        for c in api.containers(all=True, filters=mine):
            api.remove_container(c["Id"], force=True, v=True)
            removed.extend(n.lstrip("/") for n in c.get("Names") or [])
    except docker.errors.DockerException as e:
        log.warning("removing the containers of %s: %s", node_root, e)
    if removed:
        log.warning("removed containers a stopped node left: %s", ", ".join(removed))
    return removed
