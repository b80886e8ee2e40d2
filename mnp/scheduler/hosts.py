"""The hosts of UNMANAGED environments: bring-up, retries with backoff, drain and removal.

Each host moves through :data:`~mnp.spec.environments.HOST_TRANSITIONS` (PENDING → PROBING →
STARTING → ACTIVE; FAILED with a named reason and a growing backoff; DRAINING on removal).
:meth:`HostKeeper.tick` runs on the head's event loop, from the scheduler's tick: it decides,
and hands every SSH call to :attr:`HostKeeper.offload` (a thread in the head). A thread never
touches the head's records: it returns a closure that :meth:`tick` applies on the loop, found
again by environment and host name (a reload may have replaced the objects). One bring-up
runs per host at a time.

A host's node (``<environment>-<host>``) exists from its first bring-up, with the host's
address; its capacity is what was given or detected before the agent starts (the agent is
told the same, so its registration matches); a fresh join token is minted for each start.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from mnp.providers.ssh import AgentStart, HostError, SshProvider
from mnp.scheduler.fleet import Fleet, Offload, inline
from mnp.scheduler.state import HeadState, NodeRuntime
from mnp.spec.environments import (
    ComputeEnvironment,
    Host,
    HostStatus,
    Node,
    NodeStatus,
    new_secret,
)
from mnp.spec.resources import Resources

log = logging.getLogger(__name__)

BACKOFF_FIRST_MS = 1_000
BACKOFF_MAX_MS = 60_000
JOIN_TIMEOUT_MS = 30_000
"""How long a started agent has to join before its bring-up counts as failed."""
STOP_GRACE_SECONDS = 5.0

Apply = Callable[[], None]


def backoff_ms(failures: int) -> int:
    """The wait before bring-up number ``failures + 1``: 1 s, doubling, at most 60 s."""
    return int(min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** max(0, failures - 1)))


class HostKeeper:
    """Keeps every environment's hosts as their records say. Loop-thread only, except the
    work it offloads (see the module)."""

    def __init__(self, state: HeadState, fleet: Fleet) -> None:
        self.s = state
        self.fleet = fleet
        self.offload: Offload = inline
        self.wake: Callable[[], None] = lambda: None
        """Called from a thread when a result is queued (thread-safe; the head wakes its loop)."""
        self._results: queue.SimpleQueue[Apply] = queue.SimpleQueue()
        self._busy: set[str] = set()
        self._started_at: dict[str, int] = {}
        self._restored = False

    def provider(self) -> SshProvider:
        p = self.fleet.provider("ssh")
        assert isinstance(p, SshProvider)  # the registry's "ssh" entry
        return p

    # --- the tick ---------------------------------------------------------------------------
    def tick(self) -> None:
        """Apply the threads' results, then take each host one step."""
        while True:
            try:
                self._results.get_nowait()()
            except queue.Empty:
                break
        for ce in list(self.s.ces.values()):
            for host in list(ce.hosts):
                self._step(ce, host)
        self._restored = True  # hosts a restart caught mid-bring-up were reset above

    def _step(self, ce: ComputeEnvironment, host: Host) -> None:
        node_id = host.node_id(ce.name)
        if node_id in self._busy:
            return
        node = self.s.nodes.get(node_id)
        now = self.s.clock()
        st = host.status
        if not self._restored and st in (HostStatus.PROBING, HostStatus.STARTING):
            self._move(ce, host, HostStatus.PENDING, "the head restarted during its bring-up")
            st = HostStatus.PENDING
        if st == HostStatus.PENDING or (st == HostStatus.FAILED and now >= host.next_try_ms):
            self._probe(ce, host)
        elif st == HostStatus.STARTING and node is not None:
            if node.status == NodeStatus.ACTIVE:
                host.failures = 0
                self._move(ce, host, HostStatus.ACTIVE, None)
            elif now - self._started_at.get(node_id, now) > JOIN_TIMEOUT_MS:
                self._fail(ce.name, host.name, HostError("AgentFailed", "its agent never joined"))
        elif st == HostStatus.ACTIVE and node is not None:
            if node.status == NodeStatus.LOST:
                self._move(ce, host, HostStatus.PENDING, node.status_reason or "its node was lost")
            elif host.head_url is None and not self.provider().tunnel_alive(node_id):
                self._move(ce, host, HostStatus.PENDING, "its tunnel to the head dropped")
        elif st == HostStatus.DRAINING:
            self._drain(ce, host, node, now)

    # --- bring-up ---------------------------------------------------------------------------
    def _probe(self, ce: ComputeEnvironment, host: Host) -> None:
        node = self._node_for(ce, host)
        self._move(ce, host, HostStatus.PROBING, None)
        spec, provider = replace(host), self.provider()
        ce_name, name, node_id = ce.name, host.name, node.node_id
        shared = ce.shared_filesystem

        def work() -> None:
            try:
                probe = provider.probe(spec, node_id)
                if shared is not None:  # SharedFilesystemMissing: the host FAILED with it
                    provider.check_shared(spec, node_id, shared.mount_path)
                provider.install(spec, node_id, probe)
                port = None if spec.head_url else provider.open_tunnel(spec, node_id)
            except HostError as e:
                self._done(node_id, partial(self._fail, ce_name, name, e))
            except Exception as e:  # a bug here must not leave the host busy for ever
                log.exception("bringing up %s", node_id)
                err = HostError("AgentFailed", f"{type(e).__name__}: {e}")
                self._done(node_id, partial(self._fail, ce_name, name, err))
            else:
                vcpus = spec.vcpus or probe.vcpus
                memory = spec.memory_mib or probe.memory_mib
                head = spec.head_url or f"http://127.0.0.1:{port}"
                self._done(node_id, lambda: self._start(ce_name, name, vcpus, memory, head))

        self._busy.add(node_id)
        self.offload(work)

    def _start(self, ce_name: str, name: str, vcpus: int, memory_mib: int, head: str) -> None:
        """The probe succeeded: size the node, mint its join token, start its agent."""
        found = self._find(ce_name, name)
        if found is None or found[1].status != HostStatus.PROBING:
            return  # removed meanwhile (its drain stops whatever started)
        ce, host = found
        node = self._node_for(ce, host)
        node.capacity = Resources(vcpus, memory_mib, 0)
        token, node.join_hash = new_secret()
        node.status, node.status_reason = NodeStatus.LAUNCHING, None
        self.s.mark_node(node)
        self.s.flush()  # the node's join hash is durable before its agent can present it
        self._move(ce, host, HostStatus.STARTING, None)
        self._started_at[node.node_id] = self.s.clock()
        # The join token only: the head's own token never leaves the head (a host's admin
        # would hold the head's owner); the node's secret carries every later call.
        start = AgentStart(node.node_id, ce.name, host.address, vcpus, memory_mib, head,
                           token, None)  # fmt: skip
        spec, provider, node_id = replace(host), self.provider(), node.node_id

        def work() -> None:
            try:
                pid = provider.start(spec, start)
            except HostError as e:
                self._done(node_id, partial(self._fail, ce_name, name, e))
            else:
                self._done(node_id, lambda: self._started(node_id, pid))

        self._busy.add(node_id)
        self.offload(work)

    def _started(self, node_id: str, pid: int) -> None:
        node = self.s.nodes.get(node_id)
        if node is not None and node.pid is None:
            node.pid = pid
            self.s.mark_node(node)

    def _fail(self, ce_name: str, name: str, e: HostError) -> None:
        """A bring-up failed: the host FAILED with the reason, its node LOST with it."""
        found = self._find(ce_name, name)
        if found is None or found[1].status == HostStatus.DRAINING:
            return
        ce, host = found
        node_id = host.node_id(ce.name)
        node = self.s.nodes.get(node_id)
        reason = str(e)
        log.warning("host %s of %s: %s", name, ce_name, reason)
        if node is not None:
            if node.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                self.fleet.lose(node_id, reason)
            node.status, node.status_reason = NodeStatus.LOST, reason
            self.s.mark_node(node)
        host.failures += 1
        host.next_try_ms = self.s.clock() + backoff_ms(host.failures)
        self._move(ce, host, HostStatus.FAILED, reason)
        if host.head_url is None:
            self.offload(lambda: self.provider().close_tunnel(node_id))

    def _node_for(self, ce: ComputeEnvironment, host: Host) -> Node:
        """The host's node record, made on its first bring-up; a lost or stopped one is taken
        up again (it rejoins with a fresh join token)."""
        node_id = host.node_id(ce.name)
        node = self.s.nodes.get(node_id)
        if node is None:
            node = Node(node_id, ce.name, host.address,
                        Resources(host.vcpus or 0, host.memory_mib or 0, 0),
                        NodeStatus.LAUNCHING, launched_at=self.s.clock())  # fmt: skip
            self.s.add_node(node)
        elif node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
            self.s.node_rt[node_id] = NodeRuntime()
        node.draining = False
        self.s.mark_node(node)
        return node

    # --- removal ------------------------------------------------------------------------------
    def remove(self, ce: ComputeEnvironment, host: Host, grace_ms: int) -> None:
        """Start draining ``host``: nothing new lands on its node; after its running work
        ends (or at ``grace_ms``, when it is stopped) its agent and tunnel are stopped and the
        host is forgotten."""
        self._move(ce, host, HostStatus.DRAINING, "being removed")
        host.remove_by_ms = self.s.clock() + grace_ms
        node = self.s.nodes.get(host.node_id(ce.name))
        if node is not None:
            node.draining = True
            self.s.mark_node(node)
        self._save(ce)
        self.s.flush()

    def _drain(self, ce: ComputeEnvironment, host: Host, node: Node | None, now: int) -> None:
        rt = self.s.node_rt.get(host.node_id(ce.name))
        busy = node is not None and node.status == NodeStatus.ACTIVE and rt is not None \
            and bool(rt.running)  # fmt: skip
        if busy and now < (host.remove_by_ms or 0):
            return
        if node is not None:
            self.fleet.stop([node], "removed from its compute environment")
        spec, provider, node_id = replace(host), self.provider(), host.node_id(ce.name)

        def work() -> None:
            try:
                provider.stop_host(spec, node_id, STOP_GRACE_SECONDS)
            except HostError as e:
                log.warning("stopping the agent of %s: %s", node_id, e)

        self.offload(work)
        ce.hosts = [h for h in ce.hosts if h.name != host.name]
        self._refresh_reason(ce)
        self._save(ce)

    def shutdown(self, stop_agents: bool) -> None:
        """The head is exiting (blocking, on its last thread): close every tunnel; with
        ``stop_agents`` stop every host's agent first (``mnp down --stop-nodes``)."""
        provider = self.fleet._providers.get("ssh")
        if not isinstance(provider, SshProvider):
            return
        if stop_agents:
            for ce in self.s.ces.values():
                for host in ce.hosts:
                    try:
                        provider.stop_host(host, host.node_id(ce.name), STOP_GRACE_SECONDS)
                    except HostError as e:
                        log.warning("stopping the agent of %s: %s", host.name, e)
        provider.close_all()

    # --- helpers -------------------------------------------------------------------------------
    def _done(self, node_id: str, apply: Apply) -> None:
        """From a thread: queue ``apply`` for the loop and wake it."""

        def run() -> None:
            self._busy.discard(node_id)
            apply()

        self._results.put(run)
        self.wake()

    def _find(self, ce_name: str, name: str) -> tuple[ComputeEnvironment, Host] | None:
        ce = self.s.ces.get(ce_name)
        host = next((h for h in ce.hosts if h.name == name), None) if ce else None
        return (ce, host) if ce is not None and host is not None else None

    def _move(self, ce: ComputeEnvironment, host: Host, to: HostStatus, why: str | None) -> None:
        host.move(to, why)
        self._refresh_reason(ce)
        self._save(ce)

    @staticmethod
    def _refresh_reason(ce: ComputeEnvironment) -> None:
        failed = [f"{h.name}: {h.status_reason}" for h in ce.hosts if h.status == HostStatus.FAILED]
        ce.status_reason = "; ".join(failed) if failed else None

    def _save(self, ce: ComputeEnvironment) -> None:
        with self.s.store.transaction():
            self.s.store.save_ce(ce)
