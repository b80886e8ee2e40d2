"""The local provider: node agents as processes on this machine, each node on a loopback
alias or in a network namespace of its own (:mod:`mnp.providers.netns`)."""

from __future__ import annotations

import builtins
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mnp.config import (
    HEAD_URL_FILE,
    PRIVATE_FILE_MODE,
    TRAVERSE_DIR_MODE,
    job_umask,
    private_dir,
)
from mnp.errors import ProviderError
from mnp.providers import Instance, LaunchOutcome, LaunchRequest, Provider, netns
from mnp.spec.containers import CONTAINER_LABEL_ROOT
from mnp.spec.environments import Node
from mnp.spec.protocol import JOIN_TOKEN_ENV

log = logging.getLogger(__name__)


class LocalProvider:
    """Starts ``python -m launcher.agent`` per node, in its own session.

    Agents are detached (own session) so they outlive the head node — crashed, or stopped
    without ``--stop-nodes`` — and keep running their jobs; a restarted head node adopts the
    ones :meth:`list` finds (agents whose ``--root`` is in this home, read from ``/proc``),
    and they reconnect by themselves: each is given ``--head-file <home>/head.url``, which
    every head rewrites at start, and re-reads it when the head stops answering, so the next
    head may listen on another port.

    Each node's root (``<home>/nodes/<node id>``: the agent's log, pid, SSH host key and the
    attempts' directories) and ``<home>/nodes`` are mode 0711, like the home
    (:data:`mnp.config.TRAVERSE_DIR_MODE`): a job a root agent runs as its submitter's account
    must pass through them to its own attempt directory (0700, that account's), while nobody
    may list them; the agent's files in the root stay 0600 (its log here), the folders it
    keeps there 0700.
    Agents start with the umask the head was started with (:func:`mnp.config.job_umask`),
    which their jobs inherit, not the head's private one.

    Each agent gets its node's one-time join token (``node.join_token``, minted by the head)
    in ``$MNP_JOIN_TOKEN`` — never on its command line, which every local user can read; the
    token is forgotten here once the agent is started.

    A node whose address is in :data:`mnp.providers.netns.NODE_SUBNET` gets a network
    namespace of its own (``mnp-<tag>-<node>``, ``eth0`` at that address, on the bridge of
    the home's one :class:`~mnp.providers.netns.Network`, tag :func:`~netns.home_tag`),
    made before its agent starts and removed when it stops; its agent gets ``--netns`` and
    serves SSH on port 22 of that address. Made, the provider removes the namespaces of its
    home that no running agent uses (what a crash left), and :meth:`stop` removes the hub
    with the last node.
    """

    def __init__(self, head_url: str, home: Path, token: str | None) -> None:
        self.head_url = head_url
        self.home = home
        self.token = token
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._network: netns.Network | None = None
        self._net_lock = threading.Lock()  # launches and stops run on the head's threads
        if netns.available():
            self._sweep_namespaces()

    def node_root(self, node: Node) -> Path:
        return self.home / "nodes" / node.node_id

    def _make_node_root(self, node: Node) -> Path:
        """The node's root and ``<home>/nodes``, created if need be, both 0711 (see above)."""
        root = private_dir(self.node_root(node))
        for d in (root.parent, root):
            os.chmod(d, TRAVERSE_DIR_MODE)
        return root

    # --- the Provider protocol (v2) ------------------------------------------------------------
    def launch(self, requests: Sequence[LaunchRequest]) -> list[LaunchOutcome]:
        """Start an agent per request (one after another: each is a fork and, for a namespace
        node, a few ``ip`` calls); a node whose agent already runs is not started again."""
        log.info("provider launch: %d node(s) in one call", len(requests))  # read by benchmarks
        running = {i.node_id: i.pid for i in self.list()}
        out = []
        for r in requests:
            if r.request_id in running:
                out.append(LaunchOutcome(r.request_id, pid=running[r.request_id]))
                continue
            try:
                out.append(LaunchOutcome(r.request_id, pid=self._start(r.node)))
            except ProviderError as e:
                out.append(LaunchOutcome(r.request_id, error=str(e)))
        return out

    def list(self) -> list[Instance]:
        """The agents of this home running now, found in ``/proc`` (their ``--root`` is under
        ``<home>/nodes``), so a restarted head sees the agents an earlier one started."""
        nodes_dir = str(self.home / "nodes").encode() + b"/"
        found = []
        for pid, argv in _agents():
            root = _arg(argv, b"--root")
            node_id = _arg(argv, b"--node-id")
            mine = root is not None and root.startswith(nodes_dir)
            if mine and node_id is not None and self._alive(pid):
                found.append(Instance(node_id.decode(errors="replace"), pid))
        return found

    def terminate(self, ids: Sequence[str], grace_seconds: float) -> None:
        """SIGTERM the nodes' agents, SIGKILL after the grace; then what their jobs left
        (processes, containers) and their namespaces. Nodes already gone are only swept."""
        log.info("provider terminate: %d node(s) in one call", len(ids))  # read by benchmarks
        wanted = set(ids)
        alive = [i.pid for i in self.list() if i.node_id in wanted and i.pid is not None]
        for pid in alive:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if self._alive(p)]
            if alive:
                time.sleep(0.05)  # a bounded wait for processes to exit, not a synchronisation
        for pid in alive:
            _signal(pid, signal.SIGKILL)
        for node_id in ids:
            root = self.home / "nodes" / node_id
            sweep(root)
            remove_leftover_containers(root)
        self._remove_namespaces(list(ids))
        for pid, child in list(self._children.items()):
            if child.poll() is None and pid not in alive:
                continue
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
            self._children.pop(pid, None)

    def is_alive(self, node: Node) -> bool:
        """Whether the node's agent runs (pid and command line checked)."""
        return node.pid is not None and any(
            i.pid == node.pid and i.node_id == node.node_id for i in self.list()
        )

    def _alive(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    def _start(self, node: Node) -> int:
        root = self._make_node_root(node)
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
            *self._node_network(node),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_source_root(), env.get("PYTHONPATH")]))
        env.pop("MNP_AGENT_TOKEN", None)  # a node joins with its join token, not the head's
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
            self._remove_namespaces([node.node_id])  # made for an agent that never started
            raise ProviderError(
                f"could not start agent for {node.node_id}: {e}", node.node_id
            ) from e
        node.join_token = None  # only its hash stays (the node record's join_hash)
        self._children[proc.pid] = proc
        return proc.pid

    # --- node networks ------------------------------------------------------------------------
    def _net(self) -> netns.Network:
        """The home's network, taken over as found (call with the lock held)."""
        if self._network is None:
            self._network = netns.Network(netns.home_tag(self.home), netns.NODE_SUBNET).open()
        return self._network

    def _node_network(self, node: Node) -> builtins.list[str]:
        """The agent's arguments for the node's network, its namespace made first; [] for a
        loopback node. Raises ProviderError when the namespace cannot be made."""
        if not netns.is_namespace_address(node.address):
            return []
        name = netns.node_name(node.node_id)
        try:
            with self._net_lock:
                net = self._net()
                net.remove_node(name)  # a namespace of this name can only be a leftover
                made = net.add_node(name, node.address)
        except (netns.NetnsError, ValueError, OSError) as e:
            raise ProviderError(f"no network for {node.node_id}: {e}", node.node_id) from e
        return ["--netns", made.namespace, "--ssh-port", "22"]

    def _remove_namespaces(self, ids: Sequence[str]) -> None:
        """Remove the nodes' namespaces (their agents are gone), and the hub with the last."""
        if self._network is None:
            if not netns.available():
                return
            probe = netns.Network(netns.home_tag(self.home), netns.NODE_SUBNET)
            names = {probe.namespace_of(netns.node_name(i)) for i in ids}
            if not names & set(probe.node_namespaces()):
                return
        with self._net_lock:
            net = self._net()
            for node_id in ids:
                net.remove_node(netns.node_name(node_id))
            if not net.node_namespaces():
                net.destroy()
                self._network = None

    def _sweep_namespaces(self) -> None:
        """Remove this home's node namespaces no running agent was started with (a crash's
        leftovers), and the hub when none is left."""
        net = netns.Network(netns.home_tag(self.home), netns.NODE_SUBNET)
        found = net.node_namespaces()
        if not found and not (netns.NETNS_DIR / net.hub).exists():
            return
        used = _agent_namespaces()
        with self._net_lock:
            for ns in found:
                if ns not in used:
                    net.remove_node(ns[len(f"mnp-{net.tag}-") :])
            if not net.node_namespaces():
                net.destroy()


def _agents() -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of every node agent on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"launcher.agent" in argv:
            found.append((int(entry.name), argv))
    return found


def _arg(argv: list[bytes], flag: bytes) -> bytes | None:
    """The value after ``flag`` in ``argv``, or None."""
    if flag not in argv:
        return None
    at = argv.index(flag) + 1
    return argv[at] if at < len(argv) else None


def _agent_namespaces() -> set[str]:
    """The ``--netns`` of every running node agent on this machine."""
    return {
        ns.decode(errors="replace")
        for _, argv in _agents()
        if (ns := _arg(argv, b"--netns")) is not None
    }


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


def _is_a_provider(p: LocalProvider) -> Provider:
    return p  # mypy checks here that the local provider keeps the protocol's shape
