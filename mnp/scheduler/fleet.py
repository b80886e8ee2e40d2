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
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from copy import deepcopy
from dataclasses import replace
from typing import Protocol

from mnp.ec2.userdata import NodeBoot
from mnp.providers import (
    Instance,
    LaunchOutcome,
    LaunchRequest,
    Provider,
    make_provider,
    sshbundle,
)
from mnp.scheduler.attempts import AttemptEnd
from mnp.scheduler.control import Control
from mnp.scheduler.ec2scaling import Ec2Scale, InstanceLaunch, scale_of
from mnp.scheduler.reconcile import SettleStatus
from mnp.scheduler.scaling import DrainNodes, RetireNodes, SetDesired
from mnp.scheduler.state import HeadState, NodeRuntime
from mnp.spec.environments import (
    CEStatus,
    ComputeEnvironment,
    ComputeEnvironmentType,
    Node,
    NodeStatus,
    new_secret,
)
from mnp.spec.jobs import HOST_LOST_PREFIX, HOST_STOPPED_PREFIX, Job
from mnp.spec.resources import Resources

log = logging.getLogger(__name__)

INVALID_AFTER = 3
"""Failed launches in a row after which the environment shows INVALID (with the error)."""
BACKOFF_CAP_MS = 60_000
LAUNCH_FAILED = "CLIENT_ERROR - launching nodes failed:"


def backoff_ms(failures: int) -> int:
    """How long to wait before the next launch after ``failures`` failed ones in a row:
    1 s, 2 s, 4 s, … at most a minute."""
    return min(BACKOFF_CAP_MS, 1000 * (1 << max(0, failures - 1)))


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
        self._providers_lock = threading.Lock()
        self._ec2_scales: dict[str, tuple[str, Ec2Scale]] = {}
        self.offload: Offload = inline
        self.on_loop: Callable[[Callable[[], None]], object] = inline
        """How offloaded work hands its outcome back to the loop thread
        (``loop.call_soon_threadsafe`` once serving)."""

    def provider(self, name: str) -> Provider:
        """The provider ``name``, made on first use (thread-safe: the head warms EC2's up in
        a thread, :meth:`warm_up`)."""
        with self._providers_lock:
            if name not in self._providers:
                self._providers[name] = make_provider(
                    name, self.head_url, self.s.config.home, self.s.config.token
                )
            return self._providers[name]

    def warm_up(self) -> None:
        """Off the loop, at start: with EC2 on, make its provider and ask for the instance
        catalogue now (DescribeInstanceTypes takes a second or more), so neither a creation
        request nor the first tick waits for it on the loop. A failure is only logged."""
        if not self.s.config.ec2:
            return
        try:
            self.provider("ec2").catalogue()  # type: ignore[attr-defined]
        except Exception as e:
            log.warning("EC2: no instance catalogue yet: %s", e)

    def launch(self, ce_name: str, count: int = 1) -> None:
        """``count`` more nodes in ``ce_name``, saved before their agents are started (so an
        agent's registration finds its record), then one batched provider launch (through
        :attr:`offload`); its outcomes come back through :meth:`_launched`."""
        s = self.s
        ce = s.ces[ce_name]
        requests = [LaunchRequest(n.node_id, n) for n in self._new_nodes(ce, count)]
        s.flush()  # the nodes exist in the store before their agents can register
        try:
            provider = self.provider(ce.provider)
        except Exception as e:  # a provider failure loses the nodes, not the head
            self._launched(ce_name, [LaunchOutcome(r.request_id, error=str(e)) for r in requests])
            return

        def work() -> None:
            try:
                outcomes = provider.launch(requests)
            except Exception as e:
                outcomes = [LaunchOutcome(r.request_id, error=str(e)) for r in requests]
            self.on_loop(lambda: self._launched(ce_name, outcomes))

        self.offload(work)

    # --- EC2 environments ----------------------------------------------------------------------
    def ec2_scale(self, ce: ComputeEnvironment) -> Ec2Scale | None:
        """The sizing of EC2 environment ``ce`` (its instance types expanded by the provider's
        catalogue, cached per ``computeResources``); None while EC2 cannot be asked."""
        key = json.dumps(ce.doc.get("computeResources") or {}, sort_keys=True, default=str)
        cached = self._ec2_scales.get(ce.name)
        if cached is None or cached[0] != key:
            try:
                provider = self.provider(ce.provider)
                catalogue = provider.catalogue()  # type: ignore[attr-defined]
                prices = provider.prices.prices  # type: ignore[attr-defined]
                scale = scale_of(ce, catalogue, prices)
            except Exception as e:  # EC2 unreachable, or the types no longer known
                log.warning("environment %s: no instance catalogue: %s", ce.name, e)
                return None
            cached = (key, scale)
            self._ec2_scales[ce.name] = cached
        scale = cached[1]
        return replace(scale, desired_vcpus=ce.desired_vcpus)

    def set_desired_vcpus(self, ce_name: str, vcpus: int) -> None:
        ce = self.s.ces.get(ce_name)
        if ce is not None and ce.desired_vcpus != vcpus:
            ce.desired_vcpus = vcpus
            self.s.mark_ce(ce)

    def launch_instances(self, ce_name: str, launches: Sequence[InstanceLaunch]) -> None:
        """EC2 instances for ``ce_name``: one LAUNCHING node per instance (its capacity the
        type's, its address known once it runs), saved before the batched provider launch, as
        :meth:`launch` does; a gang's instances carry its key (launched together or none)."""
        s = self.s
        ce = s.ces[ce_name]
        handed: list[tuple[Node, InstanceLaunch]] = []
        for launch in launches:
            for node in self._new_nodes(ce, launch.count, launch.capacity, ec2=True):
                node.instance_type = launch.instance_type
                s.nodes[node.node_id].instance_type = launch.instance_type
                handed.append((node, launch))
        s.flush()
        head = s.config.ec2_head_url or self.head_url
        resources = dict(ce.doc.get("computeResources") or {})
        try:
            provider = self.provider(ce.provider)
        except Exception as e:
            outcomes = [LaunchOutcome(n.node_id, error=str(e)) for n, _ in handed]
            self._launched(ce_name, outcomes)
            return

        def work() -> None:
            try:
                bundle = sshbundle.current()
                digest = hashlib.sha256(bundle.tar).hexdigest()
                requests = [
                    LaunchRequest(
                        node.node_id,
                        node,
                        instance_type=launch.instance_type,
                        compute_resources=resources,
                        gang=launch.gang,
                        boot=_boot(node, head, bundle.version, digest, ce),
                    )
                    for node, launch in handed
                ]
                outcomes = provider.launch(requests)
            except Exception as e:
                outcomes = [LaunchOutcome(n.node_id, error=str(e)) for n, _ in handed]
            self.on_loop(lambda: self._launched(ce_name, outcomes))

        self.offload(work)

    def _new_nodes(
        self,
        ce: ComputeEnvironment,
        count: int,
        capacity: Resources | None = None,
        ec2: bool = False,
    ) -> list[Node]:
        """Make ``count`` LAUNCHING node records (of ``capacity``, default the environment's
        shape; an EC2 node's address is unknown until it runs); returns the provider's copies
        (with their one-time join tokens, which only the copies keep)."""
        s = self.s
        handed = []
        for _ in range(count):
            used_slots = {
                n.slot
                for n in s.nodes.values()
                if n.compute_environment == ce.name
                and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
            }
            slot = next(i for i in range(len(used_slots) + 1) if i not in used_slots)
            join_token, join_hash = new_secret()  # the agent's one-time credential (to join)
            node = Node(
                node_id=f"{ce.name}-{ce.next_node_number}",
                compute_environment=ce.name,
                address="" if ec2 else _address(ce.first_address, slot),
                capacity=replace(capacity or ce.node_resources),  # a copy: the CE's may change
                status=NodeStatus.LAUNCHING,
                slot=slot,
                launched_at=s.clock(),
                last_heartbeat_ms=s.clock(),
                join_hash=join_hash,
                join_token=join_token,  # for the provider to hand over; never stored
            )
            ce.next_node_number += 1
            s.add_node(node)
            s.mark_node(node)
            handed.append(deepcopy(node))  # the provider's own copy (with the join token)
            node.join_token = None  # only its hash stays here
        s.mark_ce(ce)
        return handed

    def _launched(self, ce_name: str, outcomes: list[LaunchOutcome]) -> None:
        """A provider's launch came back (on the loop): note the agents' pids; lose the nodes
        that could not be started and back the environment off (:func:`backoff_ms`), INVALID
        with the provider's error after :data:`INVALID_AFTER` failures in a row; a success
        ends the backoff (and INVALID)."""
        s = self.s
        errors = []
        retryable = True  # every failure says the same launch may work later (capacity…)
        for o in outcomes:
            node = s.nodes.get(o.request_id)
            if node is None:
                continue
            if o.error is not None:
                errors.append(o.error)
                retryable = retryable and o.retryable
                log.error("launching %s failed: %s", o.request_id, o.error)
                if node.status == NodeStatus.LAUNCHING:
                    node.status = NodeStatus.LOST
                    node.status_reason = f"launch failed: {o.error}"
            else:
                node.pid = node.pid or o.pid
                node.instance_id = node.instance_id or o.instance_id
            s.mark_node(node)
        ce = s.ces.get(ce_name)
        if ce is None:
            return
        if errors:
            ce.launch_failures += 1
            ce.launch_retryable = retryable
            ce.next_launch_ms = s.clock() + backoff_ms(ce.launch_failures)
            reason = f"{LAUNCH_FAILED} {errors[0]}"
            if ce.status == CEStatus.DELETING:
                pass
            elif retryable or ce.launch_failures < INVALID_AFTER:
                if ce.status == CEStatus.VALID:  # AWS keeps such an environment VALID and
                    ce.status_reason = reason  # says why it waits
            else:
                ce.move(CEStatus.INVALID, reason)
        elif ce.launch_failures or ce.status == CEStatus.INVALID:
            ce.launch_failures, ce.next_launch_ms = 0, 0
            if (ce.status_reason or "").startswith(LAUNCH_FAILED):
                ce.status_reason = None  # (an UPDATING one settles VALID without it)
            if ce.status == CEStatus.INVALID:
                ce.move(CEStatus.VALID, None)
        s.mark_ce(ce)

    def scale(self, a: SetDesired | DrainNodes | RetireNodes | SettleStatus) -> None:
        """Apply one of :mod:`mnp.scheduler.scaling`'s decisions (on the loop)."""
        s = self.s
        ce = s.ces.get(a.compute_environment)
        if ce is None:
            return
        if isinstance(a, SettleStatus):
            if ce.status in (CEStatus.CREATING, CEStatus.UPDATING):
                failing = ce.launch_failures >= INVALID_AFTER and not ce.launch_retryable
                ce.move(CEStatus.INVALID if failing else CEStatus.VALID, ce.status_reason)
        elif isinstance(a, SetDesired):
            ce.desired_nodes = a.nodes
        else:
            nodes = [s.nodes[n] for n in a.node_ids if n in s.nodes]
            for node in nodes:
                node.draining = True
                s.mark_node(node)
            idle = [n for n in nodes if not s.node_rt[n.node_id].running]
            if idle:  # nothing runs there: stopped at once, in one batch
                self.stop(idle, "scaled in: idle")
        s.mark_ce(ce)

    def lose(self, node_id: str, why: str) -> None:
        """Declare a node lost: fail its attempts (the retry strategy decides) and stop it."""
        s = self.s
        node = s.nodes.get(node_id)
        if node is None or node.status in (NodeStatus.LOST, NodeStatus.STOPPED):
            return
        reason = f"{HOST_LOST_PREFIX} node {node.node_id} ({node.address}) {why}"
        if node.instance_id is not None:  # AWS's words, which retry rules match ("Host EC2*")
            reason = f"Host EC2 (instance {node.instance_id}) terminated."
        self._retire(node, NodeStatus.LOST, reason)
        ce = s.ces.get(node.compute_environment)
        if ce is not None and ce.type == ComputeEnvironmentType.MANAGED:
            self._provider_stop(ce.provider, [node.node_id], grace_seconds=0)

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
        by_provider: dict[str, list[str]] = {}
        for node in nodes:
            if node.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                self._retire(
                    node, NodeStatus.STOPPED, f"{HOST_STOPPED_PREFIX} node {node.node_id} {reason}"
                )
                ce = self.s.ces.get(node.compute_environment)
                if ce is not None and ce.type == ComputeEnvironmentType.MANAGED:
                    by_provider.setdefault(ce.provider, []).append(node.node_id)
        self.s.flush()
        for name, group in by_provider.items():
            self._provider_stop(name, group, grace_seconds=5.0)

    def _provider_stop(self, name: str, ids: list[str], grace_seconds: float) -> None:
        """Have provider ``name`` terminate the nodes ``ids`` (already retired here) through
        :attr:`offload`, in one call; a failure is logged, not raised (the nodes are already
        out of the head's books either way)."""
        try:
            provider = self.provider(name)
        except Exception as e:
            log.warning("stopping nodes: no provider %r: %s", name, e)
            return

        def work() -> None:
            try:
                provider.terminate(ids, grace_seconds=grace_seconds)
            except Exception as e:
                log.warning("stopping %s: %s", ", ".join(ids), e)

        self.offload(work)

    def adopt(self) -> None:
        """After a restart: give live nodes a fresh heartbeat allowance; the nodes of MANAGED
        environments their provider's :meth:`~mnp.providers.Provider.list` does not show
        (the substrate is the truth) are lost, and what it shows that no live node stands for
        (launched for a node since stopped, or by a head that died before it could stop it)
        is terminated: nothing is left running unaccounted for."""
        s = self.s
        now = s.clock()
        running: dict[str, dict[str, Instance] | None] = {}
        for env in s.ces.values():
            if env.type == ComputeEnvironmentType.MANAGED and env.provider not in running:
                try:
                    found = self.provider(env.provider).list()
                    running[env.provider] = {i.node_id: i for i in found}
                except Exception as e:  # unknown: nobody is lost for it, nothing stopped
                    log.warning("listing provider %r's nodes: %s", env.provider, e)
                    running[env.provider] = None
        live: set[str] = set()
        for node in list(s.nodes.values()):
            if node.status not in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING):
                continue
            node.last_heartbeat_ms = now
            ce = s.ces.get(node.compute_environment)
            if ce is None or ce.type != ComputeEnvironmentType.MANAGED:
                continue
            listed = running.get(ce.provider)
            if listed is None:
                live.add(node.node_id)
            elif node.node_id not in listed:
                self.lose(node.node_id, "was gone when the head node restarted")
            else:
                live.add(node.node_id)
                instance_id = listed[node.node_id].instance_id
                if instance_id is not None and node.instance_id is None:  # its launch's
                    node.instance_id = instance_id  # answer was lost with the head
                    s.mark_node(node)
        for name, instances in running.items():
            orphans = sorted(set(instances or ()) - live)
            if orphans:
                log.warning("stopping %s: no live node stands for them", ", ".join(orphans))
                self._provider_stop(name, orphans, grace_seconds=0)


def _boot(node: Node, head: str, version: str, digest: str, ce: ComputeEnvironment) -> NodeBoot:
    """What an EC2 node's user data needs: the head's URL, the node's identity and one-time
    join token, its capacity, the agent bundle's version and SHA-256, and the environment's
    shared filesystem with what to mount for it."""
    fs = ce.shared_filesystem
    return NodeBoot(
        head=head,
        node_id=node.node_id,
        compute_environment=node.compute_environment,
        join_token=node.join_token or "",
        vcpus=int(node.capacity.vcpus),
        memory_mib=node.capacity.memory_mib,
        gpus=node.capacity.gpus,
        version=version,
        bundle_sha256=digest,
        shared_fs=fs,
        fs_remote=None if fs is None else fs.remote,
    )


def _address(first: str, slot: int) -> str:
    a, b, c, d = (int(x) for x in first.split("."))
    n = (b << 16) + (c << 8) + d + slot
    return f"{a}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
