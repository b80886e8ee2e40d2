# ~445 lines: the capacity records (environments, nodes, hosts, queues, policies) as plain data.
"""The head's capacity: compute environments and their nodes, job queues, scheduling
policies (``to_doc``/``from_doc`` give the JSON stored in SQLite)."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from mnp.spec.arns import ce_arn, queue_arn, scheduling_policy_arn
from mnp.spec.resources import Resources
from mnp.spec.sharedfs import SharedFilesystem


class State(enum.StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


class ComputeEnvironmentType(enum.StrEnum):
    MANAGED = "MANAGED"
    """The head launches and stops its nodes (through its provider)."""
    UNMANAGED = "UNMANAGED"
    """Its nodes join by themselves (their agents register); the head never launches one."""


class NodeStatus(enum.StrEnum):
    LAUNCHING = "LAUNCHING"
    """Asked of the provider; the agent has not registered yet."""
    ACTIVE = "ACTIVE"
    """Registered and heartbeating; takes work."""
    LOST = "LOST"
    """Stopped heartbeating (or failed to come up); its attempts failed."""
    STOPPED = "STOPPED"
    """Shut down on purpose."""


def hash_secret(secret: str) -> str:
    """What a node record keeps of a credential: its SHA-256, hex (never the secret)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str | None, hashed: str | None) -> bool:
    """Whether ``secret`` is the one ``hashed`` was made from; compared in constant time.
    False when either is missing."""
    if not secret or not hashed:
        return False
    return hmac.compare_digest(hash_secret(secret), hashed)


def new_secret() -> tuple[str, str]:
    """A fresh random credential (256 bits, URL-safe text) and its :func:`hash_secret`."""
    secret = secrets.token_urlsafe(32)
    return secret, hash_secret(secret)


@dataclass(slots=True)
class Node:
    node_id: str
    compute_environment: str
    address: str
    capacity: Resources
    status: NodeStatus
    slot: int = 0
    pid: int | None = None
    launched_at: int = 0
    registered_at: int | None = None
    last_heartbeat_ms: int = 0
    ssh_port: int | None = None
    ssh_host_key: str | None = None
    secret_hash: str | None = None
    """:func:`hash_secret` of the node's own secret, issued when its agent joined; every
    later agent call must carry the secret (None: not joined yet)."""
    join_hash: str | None = None
    """:func:`hash_secret` of the one-time join token the head minted when it launched the
    node; cleared once the agent has used its own secret."""
    secret_used: bool = True
    """Whether the agent has made a call with its secret since it was issued (False from
    the issue until then: a join whose answer was lost may be repeated). Older records: True."""
    session_epoch: int = 0
    """The node's current agent session: incremented (and stored) by every successful
    register; a poll or report of another epoch is stale (refused, nothing applied)."""
    join_token: str | None = field(default=None, repr=False, compare=False)
    """The join token itself, in memory only between minting and the provider's launch
    (never stored: the provider hands it to the agent and clears it)."""
    status_reason: str | None = None
    """Why the node is as it is, when that needs saying (an SSH host's failed bring-up:
    ``HostKeyMismatch: …``, ``Unreachable: …``)."""
    draining: bool = False
    """Nothing new is placed on it (its host is being removed); running work goes on."""
    interface: str | None = None
    """The interface holding ``address`` on the node, as its agent last reported."""
    instance_type: str | None = None
    """An EC2 node's instance type (its capacity comes from it)."""
    instance_id: str | None = None
    """An EC2 node's instance (``i-…``), once its launch answered."""
    zone: str | None = None
    """An EC2 node's Availability Zone, as its metadata service says."""

    @property
    def last_seen_ms(self) -> int:
        """Its last sign of life: heartbeat, registration or launch (0: none recorded), as
        the store's retention reads a stored node (``mnp.store.sqlite._NODE_SEEN``)."""
        return max(self.last_heartbeat_ms, self.registered_at or 0, self.launched_at)

    def to_doc(self) -> dict[str, Any]:
        return {
            "instance_type": self.instance_type,
            "instance_id": self.instance_id,
            "zone": self.zone,
            "interface": self.interface,
            "status_reason": self.status_reason,
            "draining": self.draining,
            "secret_hash": self.secret_hash,
            "join_hash": self.join_hash,
            "node_id": self.node_id,
            "compute_environment": self.compute_environment,
            "address": self.address,
            "vcpus": self.capacity.vcpus,
            "memory_mib": self.capacity.memory_mib,
            "gpus": self.capacity.gpus,
            "status": self.status.value,
            "slot": self.slot,
            "pid": self.pid,
            "launched_at": self.launched_at,
            "registered_at": self.registered_at,
            "ssh_port": self.ssh_port,
            "ssh_host_key": self.ssh_host_key,
            "session_epoch": self.session_epoch,
            "secret_used": self.secret_used,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Node:
        return cls(
            node_id=d["node_id"],
            compute_environment=d["compute_environment"],
            address=d["address"],
            capacity=Resources(d["vcpus"], d["memory_mib"], d["gpus"]),
            status=NodeStatus(d["status"]),
            slot=d.get("slot", 0),
            pid=d.get("pid"),
            launched_at=d.get("launched_at", 0),
            registered_at=d.get("registered_at"),
            ssh_port=d.get("ssh_port"),
            ssh_host_key=d.get("ssh_host_key"),
            secret_hash=d.get("secret_hash"),
            join_hash=d.get("join_hash"),
            session_epoch=d.get("session_epoch", 0),
            interface=d.get("interface"),
            instance_type=d.get("instance_type"),
            instance_id=d.get("instance_id"),
            zone=d.get("zone"),
            secret_used=d.get("secret_used", True),
            status_reason=d.get("status_reason"),
            draining=d.get("draining", False),
        )


class HostStatus(enum.StrEnum):
    """Where a host's bring-up stands (:data:`HOST_TRANSITIONS`)."""

    PENDING = "PENDING"
    """Added (or to be brought up again); nothing runs for it yet."""
    PROBING = "PROBING"
    """A thread checks its SSH, its Python and installs the agent."""
    STARTING = "STARTING"
    """A thread starts its agent (and the head's tunnel to it); then the agent joins."""
    ACTIVE = "ACTIVE"
    """Its agent joined: the node takes work."""
    FAILED = "FAILED"
    """The last bring-up failed (``status_reason`` says why); tried again after a backoff."""
    DRAINING = "DRAINING"
    """Being removed: nothing new lands, running work finishes (or is stopped at the grace),
    then its agent and tunnel are stopped and the host is forgotten."""


HOST_TRANSITIONS: dict[HostStatus, frozenset[HostStatus]] = {
    # added, or its node was lost / its tunnel could not be kept: a bring-up begins
    HostStatus.PENDING: frozenset({HostStatus.PROBING, HostStatus.DRAINING}),
    # probed and installed → start it; ssh, Python or the install failed → FAILED
    # (→ PENDING: the head restarted meanwhile, the bring-up begins again)
    HostStatus.PROBING: frozenset(
        {HostStatus.STARTING, HostStatus.FAILED, HostStatus.DRAINING, HostStatus.PENDING}
    ),
    # the agent joined → ACTIVE; it could not be started or never joined → FAILED
    HostStatus.STARTING: frozenset(
        {HostStatus.ACTIVE, HostStatus.FAILED, HostStatus.DRAINING, HostStatus.PENDING}
    ),
    # its node was lost or its tunnel dropped for good → bring it up again
    HostStatus.ACTIVE: frozenset({HostStatus.PENDING, HostStatus.DRAINING}),
    # the backoff passed → try again
    HostStatus.FAILED: frozenset({HostStatus.PROBING, HostStatus.DRAINING}),
    # removal ends in the host's record being dropped, not in another status
    HostStatus.DRAINING: frozenset(),
}


class IllegalHostTransition(ValueError):
    """A host status change :data:`HOST_TRANSITIONS` does not allow."""


@dataclass(slots=True)
class Host:
    """One machine of an UNMANAGED environment, as added (``addHost``) and as it stands."""

    name: str
    address: str
    identity_file: str
    """The private key's path on the head."""
    port: int = 22
    user: str = "root"
    host_key: str | None = None
    """The pinned host key (``ssh-ed25519 AAAA…``); else ``known_hosts`` names a file."""
    known_hosts: str | None = None
    python: str = "python3"
    vcpus: int | None = None
    """Given; None: detected (``nproc``) at bring-up."""
    memory_mib: int | None = None
    head_url: str | None = None
    """How the host's agent reaches the head; None: a reverse tunnel the head keeps."""
    proxy_command: str | None = None
    """OpenSSH's ``ProxyCommand`` for reaching the host (a bastion: ``ssh -W %h:%p gw``)."""
    status: HostStatus = HostStatus.PENDING
    status_reason: str | None = None
    failures: int = 0
    """Bring-ups failed in a row (the backoff grows with it)."""
    next_try_ms: int = 0
    remove_by_ms: int | None = None
    """While DRAINING: when running work is stopped if it has not finished."""
    added_at: int = 0

    def node_id(self, ce_name: str) -> str:
        return f"{ce_name}-{self.name}"

    def move(self, target: HostStatus, reason: str | None = None) -> None:
        """The one way a host's status changes; raises :class:`IllegalHostTransition`."""
        if target != self.status and target not in HOST_TRANSITIONS[self.status]:
            raise IllegalHostTransition(f"host {self.name}: {self.status} -> {target}")
        self.status = target
        self.status_reason = reason

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name, "address": self.address, "identity_file": self.identity_file,
            "port": self.port, "user": self.user, "host_key": self.host_key,
            "known_hosts": self.known_hosts, "python": self.python, "vcpus": self.vcpus,
            "memory_mib": self.memory_mib, "head_url": self.head_url,
            "proxy_command": self.proxy_command, "status": self.status.value,
            "status_reason": self.status_reason,
            "failures": self.failures, "next_try_ms": self.next_try_ms,
            "remove_by_ms": self.remove_by_ms, "added_at": self.added_at,
        }  # fmt: skip

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Host:
        return cls(**{**d, "status": HostStatus(d["status"])})


class CEStatus(enum.StrEnum):
    """Where a compute environment stands (AWS's ``status``; :data:`CE_TRANSITIONS`)."""

    CREATING = "CREATING"
    """Just created; the scheduler has not looked at it yet."""
    UPDATING = "UPDATING"
    """Just updated; the scheduler has not applied the change yet."""
    DELETING = "DELETING"
    """Its nodes are being stopped before the record goes."""
    VALID = "VALID"
    """Healthy: its nodes can be launched."""
    INVALID = "INVALID"
    """Launches failed repeatedly (``status_reason`` carries the provider's error); they are
    still tried, with a growing backoff, and the first success makes it VALID again."""


CE_TRANSITIONS: dict[CEStatus, frozenset[CEStatus]] = {
    # the first tick after a create: VALID; deleted before that: DELETING
    CEStatus.CREATING: frozenset({CEStatus.VALID, CEStatus.INVALID, CEStatus.DELETING}),
    # the first tick after an update: back to VALID (or INVALID if launches still fail)
    CEStatus.UPDATING: frozenset({CEStatus.VALID, CEStatus.INVALID, CEStatus.DELETING}),
    # launches failing repeatedly → INVALID; an update → UPDATING; delete → DELETING
    CEStatus.VALID: frozenset({CEStatus.INVALID, CEStatus.UPDATING, CEStatus.DELETING}),
    # a launch succeeded → VALID; an update → UPDATING; delete → DELETING
    CEStatus.INVALID: frozenset({CEStatus.VALID, CEStatus.UPDATING, CEStatus.DELETING}),
    # deletion ends in the record being dropped
    CEStatus.DELETING: frozenset(),
}


@dataclass(slots=True)
class ComputeEnvironment:
    name: str
    type: ComputeEnvironmentType
    state: State
    provider: str
    """Which provider brings nodes up: ``local`` (more in later versions)."""
    node_count: int
    """The most nodes it may have (``maxvCpus`` in nodes); an UNMANAGED one: 0."""
    node_resources: Resources
    created_at: int
    doc: dict[str, Any] = field(default_factory=dict)
    """The create request as given (computeResources, tags, …), echoed on describe."""
    first_address: str = "127.0.0.2"
    next_node_number: int = 1
    shared_filesystem: SharedFilesystem | None = None
    """The filesystem every node sees at the same path (:mod:`mnp.spec.sharedfs`)."""
    hosts: list[Host] = field(default_factory=list)
    """An UNMANAGED environment's own machines, reached over SSH (``addHost``)."""
    status_reason: str | None = None
    """Why the environment is not healthy (its hosts' failures, named); None: healthy."""
    min_nodes: int = 0
    """The fewest nodes a MANAGED environment keeps (``minvCpus`` in nodes), idle or not."""
    desired_nodes: int = 0
    """How many nodes it aims at now, between ``min_nodes`` and ``node_count``: raised by
    RUNNABLE demand, lowered as idle nodes are scaled in, set by an update's ``desiredvCpus``."""
    status: CEStatus = CEStatus.CREATING
    launch_failures: int = 0
    """Launches failed in a row (the backoff grows with it; INVALID past a few)."""
    next_launch_ms: int = 0
    """No launch before this (the backoff after a failure)."""
    launch_retryable: bool = False
    """The last failed launch may work later unchanged (EC2 short of capacity, a limit,
    throttling): the environment backs off but stays VALID, its reason saying why."""
    desired_vcpus: int = 0
    """An EC2 environment's aim, in vCPUs (its nodes are instances of several sizes, so
    ``*_nodes`` do not apply; ``minvCpus``/``maxvCpus`` are read from :attr:`doc`)."""

    @property
    def arn(self) -> str:
        return ce_arn(self.name)

    @property
    def ec2(self) -> bool:
        """Its nodes are EC2 instances (:mod:`mnp.providers.ec2`)."""
        return self.provider == "ec2"

    def vcpu_bounds(self) -> tuple[int, int]:
        """``(minvCpus, maxvCpus)`` as given (validated at creation and update)."""
        cr = self.doc.get("computeResources") or {}
        return int(cr.get("minvCpus") or 0), int(cr.get("maxvCpus") or 0)

    def move(self, target: CEStatus, reason: str | None = None) -> None:
        """The one way the status changes; raises :class:`IllegalCETransition`."""
        if target != self.status and target not in CE_TRANSITIONS[self.status]:
            raise IllegalCETransition(f"compute environment {self.name}: {self.status} -> {target}")
        self.status = target
        self.status_reason = reason

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": str(self.type),
            "state": self.state.value,
            "provider": self.provider,
            "node_count": self.node_count,
            "vcpus": self.node_resources.vcpus,
            "memory_mib": self.node_resources.memory_mib,
            "gpus": self.node_resources.gpus,
            "created_at": self.created_at,
            "doc": self.doc,
            "first_address": self.first_address,
            "next_node_number": self.next_node_number,
            "shared_filesystem": (
                self.shared_filesystem.to_doc() if self.shared_filesystem else None
            ),
            "hosts": [h.to_doc() for h in self.hosts],
            "status_reason": self.status_reason,
            "min_nodes": self.min_nodes,
            "desired_nodes": self.desired_nodes,
            "status": self.status.value,
            "launch_failures": self.launch_failures,
            "next_launch_ms": self.next_launch_ms,
            "desired_vcpus": self.desired_vcpus,
            "launch_retryable": self.launch_retryable,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> ComputeEnvironment:
        return cls(
            name=d["name"],
            type=ComputeEnvironmentType(d["type"]),
            state=State(d["state"]),
            provider=d["provider"],
            node_count=d["node_count"],
            node_resources=Resources(d["vcpus"], d["memory_mib"], d["gpus"]),
            created_at=d["created_at"],
            doc=d["doc"],
            first_address=d["first_address"],
            next_node_number=d["next_node_number"],
            # the older {hostPath, containerPath} records read as a bind
            shared_filesystem=SharedFilesystem.from_doc(d["shared_filesystem"])
            if d.get("shared_filesystem")
            else None,
            hosts=[Host.from_doc(h) for h in d.get("hosts") or []],
            status_reason=d.get("status_reason"),
            # an older record's environment was a fixed size: min = desired = its count
            min_nodes=d.get("min_nodes", d["node_count"]),
            desired_nodes=d.get("desired_nodes", d["node_count"]),
            status=CEStatus(d.get("status", "VALID")),
            launch_failures=d.get("launch_failures", 0),
            next_launch_ms=d.get("next_launch_ms", 0),
            desired_vcpus=d.get("desired_vcpus", 0),
            launch_retryable=d.get("launch_retryable", False),
        )


class IllegalCETransition(ValueError):
    """A compute environment status change :data:`CE_TRANSITIONS` does not allow."""


@dataclass(slots=True)
class JobQueue:
    name: str
    priority: int
    state: State
    compute_environment_order: list[tuple[int, str]]
    """(order, compute environment name), ascending order tried first."""
    created_at: int
    tags: dict[str, str] = field(default_factory=dict)
    scheduling_policy_arn: str | None = None
    """None: a FIFO queue (and it stays one); else its fair-share policy."""
    time_limit_actions: list[dict[str, Any]] = field(default_factory=list)
    """``jobStateTimeLimitActions`` as given."""

    @property
    def arn(self) -> str:
        return queue_arn(self.name)

    @property
    def ce_names(self) -> list[str]:
        return [name for _, name in sorted(self.compute_environment_order)]

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "priority": self.priority,
            "state": self.state.value,
            "ce_order": [list(x) for x in self.compute_environment_order],
            "created_at": self.created_at,
            "tags": self.tags,
            "scheduling_policy_arn": self.scheduling_policy_arn,
            "time_limit_actions": self.time_limit_actions,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> JobQueue:
        return cls(
            name=d["name"],
            priority=d["priority"],
            state=State(d["state"]),
            compute_environment_order=[(int(o), str(n)) for o, n in d["ce_order"]],
            created_at=d["created_at"],
            tags=d.get("tags", {}),
            scheduling_policy_arn=d.get("scheduling_policy_arn"),
            time_limit_actions=d.get("time_limit_actions") or [],
        )


@dataclass(slots=True)
class SchedulingPolicy:
    """A fair-share scheduling policy (AWS Batch's SchedulingPolicyDetail)."""

    name: str
    fairshare: dict[str, Any]
    """``fairsharePolicy`` as validated: shareDecaySeconds, computeReservation,
    shareDistribution[{shareIdentifier, weightFactor}]."""
    created_at: int
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return scheduling_policy_arn(self.name)

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fairshare": self.fairshare,
            "created_at": self.created_at,
            "tags": self.tags,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> SchedulingPolicy:
        return cls(d["name"], d["fairshare"], d["created_at"], d.get("tags", {}))
