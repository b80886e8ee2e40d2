"""The nodes the head launches, loses and stops, through their compute environments'
providers (one provider object per name, made when first needed).

A node's end ends its attempts first (``Host lost: …`` / ``Host stopped: …``), through the
scheduler's one attempt-end path, so the retry strategy decides what runs again. Retrying a
lost node's attempts is safe (issue 11): the node's lease (``HeadConfig.lease``) ended at
least ``lost_after - lease`` seconds before the head declares it lost, and its fence
(``launcher/fence.py``) stopped the work then. A lost node may register again and rejoin as a
new session (:mod:`mnp.nodes.sessions`); a stopped one may not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from copy import deepcopy
from dataclasses import replace
from typing import Protocol

from mnp.providers import Provider, make_provider
from mnp.scheduler.attempts import AttemptEnd
from mnp.scheduler.control import Control
from mnp.scheduler.state import HeadState, NodeRuntime
from mnp.spec.environments import ComputeEnvironmentType, Node, NodeStatus, new_secret
from mnp.spec.jobs import HOST_LOST_PREFIX, HOST_STOPPED_PREFIX, Job

log = logging.getLogger(__name__)


Offload = Callable[[Callable[[], None]], object]
"""Runs a piece of blocking provider work: at once (:func:`inline`) or in a thread."""


def inline(work: Callable[[], None]) -> None:
    """Run ``work`` now, on the caller's thread (unit tests; the head's last stops at exit)."""
    work()


def in_thread(executor: Executor) -> Offload:
    """Run work on ``executor``, handed over from the running event loop (call this on it);
    the loop goes on serving while the work blocks."""
    loop = asyncio.get_running_loop()
    return lambda work: loop.run_in_executor(executor, work)


class AttemptEnds(Protocol):
    """What the fleet needs of the scheduler: the one way an attempt ends, and its controls."""

    control: Control

    def end_attempt(self, job: Job, end: AttemptEnd) -> None: ...


class Fleet:
    """Launch, adopt, lose and stop nodes. Single-threaded, on the head's event loop, except the
    providers' launches and stops, which may block (the local provider makes a network
    namespace, starts a process, waits up to ``grace_seconds``): they go through
    :attr:`offload` (a thread in the head), with copies of the nodes, and a launch's outcome
    comes back through :attr:`on_loop`, so the scheduler's records are only ever touched on
    the loop thread."""

    def __init__(self, state: HeadState, ends: AttemptEnds, head_url: str) -> None:
        self.s = state
        self._ends = ends
        self.head_url = head_url
        self._providers: dict[str, Provider] = {}
        self.offload: Offload = inline
        self.on_loop: Callable[[Callable[[], None]], object] = inline
        """How offloaded work hands its outcome back to the loop thread
        (``loop.call_soon_threadsafe`` once serving)."""

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = make_provider(
                name, self.head_url, self.s.config.home, self.s.config.token
            )
        return self._providers[name]

    def launch(self, ce_name: str) -> None:
        """One more node in ``ce_name``, saved before its agent is started (so the agent's
        registration finds it); a provider failure marks it LOST instead of raising."""
        s = self.s
        ce = s.ces[ce_name]
        used_slots = {
            n.slot
            for n in s.nodes.values()
            if n.compute_environment == ce_name
            and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
        }
        slot = next(i for i in range(len(used_slots) + 1) if i not in used_slots)
        join_token, join_hash = new_secret()  # the agent's one-time credential (to join)
        node = Node(
            node_id=f"{ce.name}-{ce.next_node_number}",
            compute_environment=ce.name,
            address=_address(ce.first_address, slot),
            capacity=replace(ce.node_resources),  # a copy: the environment's may change
            status=NodeStatus.LAUNCHING,
            slot=slot,
            launched_at=s.clock(),
            last_heartbeat_ms=s.clock(),
            join_hash=join_hash,
            join_token=join_token,  # for the provider to hand over; never stored
        )
        ce.next_node_number += 1
        s.store.save_ce(ce)
        s.add_node(node)
        s.mark_node(node)
        s.flush()  # the node exists in the store before its agent can register
        try:
            provider = self.provider(ce.provider)
        except Exception as e:  # a provider failure loses the node, not the head
            self._launched(node.node_id, None, e)
            return
        handed = deepcopy(node)  # the provider's own copy (with the join token)
        node.join_token = None  # only its hash stays here

        def work() -> None:
            try:
                pid, error = provider.launch(handed), None
            except Exception as e:
                pid, error = None, e
            self.on_loop(lambda: self._launched(handed.node_id, pid, error))

        self.offload(work)

    def _launched(self, node_id: str, pid: int | None, error: Exception | None) -> None:
        """A provider's launch came back (on the loop): note the agent's pid, or lose the
        node that could not be started."""
        node = self.s.nodes.get(node_id)
        if node is None:
            return
        if error is not None:
            log.error("launching %s failed: %s", node_id, error)
            if node.status == NodeStatus.LAUNCHING:
                node.status = NodeStatus.LOST
        elif node.pid is None:
            node.pid = pid
        self.s.mark_node(node)

    def lose(self, node_id: str, why: str) -> None:
        """Declare a node lost: fail its attempts (the retry strategy decides) and stop it."""
        s = self.s
        node = s.nodes.get(node_id)
        if node is None or node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
            return
        self._retire(
            node, NodeStatus.LOST, f"{HOST_LOST_PREFIX} node {node.node_id} ({node.address}) {why}"
        )
        ce = s.ces.get(node.compute_environment)
        if ce is not None and ce.type == ComputeEnvironmentType.MANAGED:
            self._provider_stop(ce.provider, [node], grace_seconds=0)

    def _retire(self, node: Node, status: NodeStatus, reason: str) -> None:
        s = self.s
        node.status = status
        s.mark_node(node)
        rt = s.node_rt.setdefault(node.node_id, NodeRuntime())
        for job in list(rt.running.values()):
            self._ends.end_attempt(job, AttemptEnd(None, None, reason))
        rt.outbox.clear()
        rt.unacked.clear()
        self._ends.control.forget_node(node.node_id)
        log.warning("%s", reason)

    def stop(self, nodes: list[Node], reason: str) -> None:
        by_provider: dict[str, list[Node]] = {}
        for node in nodes:
            if node.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                self._retire(
                    node, NodeStatus.STOPPED, f"{HOST_STOPPED_PREFIX} node {node.node_id} {reason}"
                )
                ce = self.s.ces.get(node.compute_environment)
                if ce is not None and ce.type == ComputeEnvironmentType.MANAGED:
                    by_provider.setdefault(ce.provider, []).append(node)
        self.s.flush()
        for name, group in by_provider.items():
            self._provider_stop(name, group, grace_seconds=5.0)

    def _provider_stop(self, name: str, nodes: list[Node], grace_seconds: float) -> None:
        """Have provider ``name`` stop ``nodes`` (already retired here) through :attr:`offload`.
        The provider gets copies, made now on the loop thread; a failure is logged, not
        raised (the nodes are already out of the head's books either way)."""
        try:
            provider = self.provider(name)
        except Exception as e:
            log.warning("stopping nodes: no provider %r: %s", name, e)
            return
        copies = [deepcopy(n) for n in nodes]

        def work() -> None:
            try:
                provider.stop(copies, grace_seconds=grace_seconds)
            except Exception as e:
                log.warning("stopping %s: %s", ", ".join(n.node_id for n in copies), e)

        self.offload(work)

    def adopt(self) -> None:
        """After a restart: give live nodes a fresh heartbeat allowance; the rest are lost."""
        s = self.s
        now = s.clock()
        for node in s.nodes.values():
            if node.status not in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                continue
            node.last_heartbeat_ms = now
            ce = s.ces.get(node.compute_environment)
            if ce is not None and ce.type == ComputeEnvironmentType.MANAGED:
                try:
                    alive = self.provider(ce.provider).is_alive(node)
                except Exception:
                    alive = True
                if not alive:
                    self.lose(node.node_id, "was gone when the head node restarted")


def _address(first: str, slot: int) -> str:
    a, b, c, d = (int(x) for x in first.split("."))
    n = (b << 16) + (c << 8) + d + slot
    return f"{a}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
