"""The objects the head node keeps: plain dataclasses with AWS Batch's names and rules.

The HTTP edge validates input (``mnp.service.validation``) and builds these; everything inside the
head node works on them. ``to_doc``/``from_doc`` give the JSON stored in SQLite.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mnp.spec.states import HistoryEntry, JobStatus

if TYPE_CHECKING:
    from mnp.spec.noderanges import NodeSpec

REGION = "local"
ACCOUNT = "000000000000"
ARN_PREFIX = f"arn:aws:batch:{REGION}:{ACCOUNT}"


def queue_arn(name: str) -> str:
    return f"{ARN_PREFIX}:job-queue/{name}"


def ce_arn(name: str) -> str:
    return f"{ARN_PREFIX}:compute-environment/{name}"


def job_definition_arn(name: str, revision: int) -> str:
    return f"{ARN_PREFIX}:job-definition/{name}:{revision}"


def job_arn(job_id: str) -> str:
    return f"{ARN_PREFIX}:job/{job_id}"


def scheduling_policy_arn(name: str) -> str:
    return f"{ARN_PREFIX}:scheduling-policy/{name}"


def name_from_arn(value: str, kind: str) -> str:
    """``arn:…:<kind>/<name>`` → ``<name>``; a plain name is returned as it is."""
    marker = f":{kind}/"
    if value.startswith("arn:") and marker in value:
        return value.split(marker, 1)[1]
    return value


class State(enum.StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"


@dataclass(slots=True)
class Resources:
    vcpus: float = 1.0
    memory_mib: int = 0
    gpus: int = 0

    def fits_in(self, free: Resources) -> bool:
        return (
            self.vcpus <= free.vcpus + 1e-9
            and self.memory_mib <= free.memory_mib
            and self.gpus <= free.gpus
        )

    def minus(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus - other.vcpus, self.memory_mib - other.memory_mib, self.gpus - other.gpus
        )

    def plus(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus, self.memory_mib + other.memory_mib, self.gpus + other.gpus
        )

    def shortfall(self, capacity: Resources) -> str | None:
        """Why this request can never fit ``capacity`` (None when it can)."""
        if self.vcpus > capacity.vcpus + 1e-9:
            return f"needs {_num(self.vcpus)} vCPUs, largest node has {_num(capacity.vcpus)}"
        if self.memory_mib > capacity.memory_mib:
            return f"needs {self.memory_mib} MiB memory, largest node has {capacity.memory_mib} MiB"
        if self.gpus > capacity.gpus:
            return f"needs {self.gpus} GPUs, largest node has {capacity.gpus}"
        return None

    def to_requirements(self) -> list[dict[str, str]]:
        out = [{"type": "VCPU", "value": _num(self.vcpus)}]
        if self.memory_mib:
            out.append({"type": "MEMORY", "value": str(self.memory_mib)})
        if self.gpus:
            out.append({"type": "GPU", "value": str(self.gpus)})
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True, slots=True)
class EvaluateOnExit:
    action: str
    """RETRY or EXIT (upper-cased at the edge)."""
    on_status_reason: str | None = None
    on_reason: str | None = None
    on_exit_code: str | None = None

    def matches(self, exit_code: int | None, reason: str | None, status_reason: str | None) -> bool:
        """True when every condition given matches (AWS ANDs them)."""
        checks = (
            (self.on_exit_code, "" if exit_code is None else str(exit_code)),
            (self.on_reason, reason or ""),
            (self.on_status_reason, status_reason or ""),
        )
        return all(pattern is None or glob_match(pattern, value) for pattern, value in checks)


def glob_match(pattern: str, value: str) -> bool:
    """AWS's pattern rule: whole-string match, or a prefix match when it ends in ``*``."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


@dataclass(frozen=True, slots=True)
class RetryStrategy:
    attempts: int = 1
    evaluate_on_exit: tuple[EvaluateOnExit, ...] = ()

    def should_retry(
        self,
        attempts_made: int,
        exit_code: int | None,
        reason: str | None,
        status_reason: str | None,
    ) -> bool:
        """Whether a failed attempt gets another: first matching rule wins; none → retry."""
        if attempts_made >= self.attempts:
            return False
        for rule in self.evaluate_on_exit:
            if rule.matches(exit_code, reason, status_reason):
                return rule.action == "RETRY"
        return True

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attempts": self.attempts}
        if self.evaluate_on_exit:
            out["evaluateOnExit"] = [
                {
                    k: v
                    for k, v in (
                        ("onStatusReason", r.on_status_reason),
                        ("onReason", r.on_reason),
                        ("onExitCode", r.on_exit_code),
                        ("action", r.action),
                    )
                    if v is not None
                }
                for r in self.evaluate_on_exit
            ]
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any] | None) -> RetryStrategy:
        if not d:
            return cls()
        return cls(
            attempts=int(d.get("attempts") or 1),
            evaluate_on_exit=tuple(
                EvaluateOnExit(
                    action=str(r["action"]).upper(),
                    on_status_reason=r.get("onStatusReason"),
                    on_reason=r.get("onReason"),
                    on_exit_code=r.get("onExitCode"),
                )
                for r in d.get("evaluateOnExit") or []
            ),
        )


@dataclass(slots=True)
class ContainerSpec:
    """Resolved container properties of a job (definition + overrides + parameters)."""

    command: list[str]
    environment: dict[str, str]
    resources: Resources
    image: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other containerProperties field, kept verbatim (volumes, mountPoints, …)."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.image is not None:
            out["image"] = self.image
        out["command"] = list(self.command)
        out["environment"] = [{"name": k, "value": v} for k, v in self.environment.items()]
        out["resourceRequirements"] = self.resources.to_requirements()
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ContainerSpec:
        known = {"image", "command", "environment", "resourceRequirements", "vcpus", "memory"}
        return cls(
            command=[str(c) for c in d.get("command") or []],
            environment={
                str(e["name"]): str(e.get("value", "")) for e in d.get("environment") or []
            },
            resources=resources_from_wire(d),
            image=d.get("image"),
            extra={k: v for k, v in d.items() if k not in known},
        )


def resources_from_wire(d: dict[str, Any], base: Resources | None = None) -> Resources:
    """Read ``resourceRequirements`` (and the deprecated ``vcpus``/``memory``) over ``base``."""
    r = Resources(base.vcpus, base.memory_mib, base.gpus) if base else Resources()
    if d.get("vcpus") is not None:
        r.vcpus = float(d["vcpus"])
    if d.get("memory") is not None:
        r.memory_mib = int(d["memory"])
    for req in d.get("resourceRequirements") or []:
        kind, value = str(req["type"]).upper(), str(req["value"])
        if kind == "VCPU":
            r.vcpus = float(value)
        elif kind == "MEMORY":
            r.memory_mib = int(value)
        elif kind == "GPU":
            r.gpus = int(value)
    return r


@dataclass(slots=True)
class JobDefinition:
    name: str
    revision: int
    status: str
    """ACTIVE or INACTIVE."""
    doc: dict[str, Any]
    """The registered request as given (AWS shape), echoed by DescribeJobDefinitions."""

    @property
    def arn(self) -> str:
        return job_definition_arn(self.name, self.revision)

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.doc,
            "jobDefinitionName": self.name,
            "jobDefinitionArn": self.arn,
            "revision": self.revision,
            "status": self.status,
        }


DEPENDENCY_TYPES = ("N_TO_N", "SEQUENTIAL", "AFTER_OK", "AFTER_ANY", "AFTER_NOT_OK", "AFTER_START")
"""AWS's two, then mnp's: what the dependency must have done (Slurm's afterok, afterany,
afternotok, after). No type means AFTER_OK."""


class Condition(enum.StrEnum):
    """What a dependency must have done for its dependent to go on."""

    OK = "OK"
    """SUCCEEDED (AWS's only rule; Slurm's ``afterok``)."""
    ANY = "ANY"
    """Ended, either way (``afterany``)."""
    NOT_OK = "NOT_OK"
    """FAILED (``afternotok``)."""
    START = "START"
    """Started: RUNNING or ended (``after``)."""


CONDITION_OF_TYPE = {
    "AFTER_ANY": Condition.ANY,
    "AFTER_NOT_OK": Condition.NOT_OK,
    "AFTER_START": Condition.START,
}


@dataclass(frozen=True, slots=True)
class Dependency:
    job_id: str | None
    type: str | None = None
    """None or one of :data:`DEPENDENCY_TYPES`."""

    @property
    def condition(self) -> Condition:
        return CONDITION_OF_TYPE.get(self.type or "", Condition.OK)

    def to_wire(self) -> dict[str, str]:
        out = {}
        if self.job_id is not None:
            out["jobId"] = self.job_id
        if self.type is not None:
            out["type"] = self.type
        return out


@dataclass(frozen=True, slots=True)
class JobExtras:
    """mnp's additions to SubmitJob (its ``mnp`` object): what Slurm users ask for and AWS
    Batch has no field for. Stored with the spec; every field optional."""

    user: str | None = None
    array_max_running: int | None = None
    """At most this many children RUNNABLE, STARTING or RUNNING at once (``--array=…%N``)."""
    dependency_mode: str = "ALL"
    """``ALL``: every dependency must be satisfied; ``ANY``: one is enough (Slurm's ``?``)."""
    singleton_after: tuple[str, ...] = ()
    """``singleton``: the earlier active jobs of the same name and user, resolved at submit;
    each must have ended (whatever ``dependency_mode`` says)."""
    stdout: str | None = None
    """Path pattern (``%j %A %a %x %N %u %%``) the output also goes to; stderr joins it when
    ``stderr`` is None."""
    stderr: str | None = None
    workdir: str | None = None
    submit_dir: str | None = None
    script: str | None = None
    """A batch script: written to a private file per attempt and run with the command as its
    arguments."""
    ntasks: int | None = None
    ntasks_per_node: int | None = None
    cpus_per_task: int | None = None

    _WIRE = (
        ("user", "user"), ("array_max_running", "arrayMaxRunning"),
        ("stdout", "stdout"), ("stderr", "stderr"), ("workdir", "workingDirectory"),
        ("submit_dir", "submitDir"), ("script", "script"), ("ntasks", "ntasks"),
        ("ntasks_per_node", "ntasksPerNode"), ("cpus_per_task", "cpusPerTask"),
    )  # fmt: skip

    def to_doc(self) -> dict[str, Any]:
        """camelCase, as the ``mnp`` object of SubmitJob; defaults left out."""
        out: dict[str, Any] = {
            wire: getattr(self, attr)
            for attr, wire in self._WIRE
            if getattr(self, attr) is not None
        }
        if self.dependency_mode != "ALL":
            out["dependencyMode"] = self.dependency_mode
        if self.singleton_after:
            out["singletonAfter"] = list(self.singleton_after)
        return out

    @classmethod
    def from_doc(cls, d: dict[str, Any] | None) -> JobExtras:
        if not d:
            return NO_EXTRAS
        return cls(
            **{attr: d.get(wire) for attr, wire in cls._WIRE},
            dependency_mode=str(d.get("dependencyMode") or "ALL"),
            singleton_after=tuple(d.get("singletonAfter") or ()),
        )


NO_EXTRAS = JobExtras()


@dataclass(slots=True)
class JobSpec:
    """What was submitted: shared by an array parent and all its children."""

    spec_id: str
    """The id of the job that was submitted (the array parent for children)."""
    name: str
    queue: str
    definition_arn: str
    definition_name: str
    container: ContainerSpec
    parameters: dict[str, str]
    depends_on: list[Dependency]
    retry: RetryStrategy
    timeout_seconds: int | None
    array_size: int | None
    tags: dict[str, str]
    platform_capabilities: list[str]
    submitted_at: int
    nodes: NodeSpec | None = None
    """Multi-node parallel jobs only: the nodes and their containers."""
    share_identifier: str | None = None
    """Fair-share queues only: the share the job is charged to."""
    scheduling_priority: int | None = None
    """``schedulingPriorityOverride`` or the definition's ``schedulingPriority``."""
    propagate_tags: bool = False
    extras: JobExtras = NO_EXTRAS

    def to_doc(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.extras is not NO_EXTRAS:
            extra["mnp"] = self.extras.to_doc()
        if self.share_identifier is not None:
            extra["share_identifier"] = self.share_identifier
        if self.scheduling_priority is not None:
            extra["scheduling_priority"] = self.scheduling_priority
        if self.propagate_tags:
            extra["propagate_tags"] = True
        return {
            **extra,
            "nodes": self.nodes.to_doc() if self.nodes is not None else None,
            "spec_id": self.spec_id,
            "name": self.name,
            "queue": self.queue,
            "definition_arn": self.definition_arn,
            "definition_name": self.definition_name,
            "container": self.container.to_wire(),
            "parameters": self.parameters,
            "depends_on": [d.to_wire() for d in self.depends_on],
            "retry": self.retry.to_wire(),
            "timeout_seconds": self.timeout_seconds,
            "array_size": self.array_size,
            "tags": self.tags,
            "platform_capabilities": self.platform_capabilities,
            "submitted_at": self.submitted_at,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> JobSpec:
        return cls(
            spec_id=d["spec_id"],
            name=d["name"],
            queue=d["queue"],
            definition_arn=d["definition_arn"],
            definition_name=d["definition_name"],
            container=ContainerSpec.from_wire(d["container"]),
            parameters=d["parameters"],
            depends_on=[Dependency(x.get("jobId"), x.get("type")) for x in d["depends_on"]],
            retry=RetryStrategy.from_wire(d["retry"]),
            timeout_seconds=d["timeout_seconds"],
            array_size=d["array_size"],
            tags=d["tags"],
            platform_capabilities=d["platform_capabilities"],
            submitted_at=d["submitted_at"],
            nodes=_node_spec(d.get("nodes")),
            share_identifier=d.get("share_identifier"),
            scheduling_priority=d.get("scheduling_priority"),
            propagate_tags=bool(d.get("propagate_tags")),
            extras=JobExtras.from_doc(d.get("mnp")),
        )


def _node_spec(d: dict[str, Any] | None) -> NodeSpec | None:
    if d is None:
        return None
    from mnp.spec.noderanges import NodeSpec  # multinode builds on this module

    return NodeSpec.from_doc(d)


@dataclass(slots=True)
class Attempt:
    number: int
    node_id: str
    address: str
    compute_environment: str
    log_stream_name: str
    placed_at: int
    started_at: int | None = None
    stopped_at: int | None = None
    exit_code: int | None = None
    reason: str | None = None
    """Container-level reason (e.g. "Timeout", the terminate reason, a start error)."""
    status_reason: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "node_id": self.node_id,
            "address": self.address,
            "compute_environment": self.compute_environment,
            "log_stream_name": self.log_stream_name,
            "placed_at": self.placed_at,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "status_reason": self.status_reason,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Attempt:
        return cls(**d)


@dataclass(slots=True)
class Job:
    """A job's runtime state. Array children share their parent's ``spec``."""

    job_id: str
    spec: JobSpec
    status: JobStatus
    created_at: int
    parent_id: str | None = None
    array_index: int | None = None
    node_index: int | None = None
    """Nodes of a multi-node parallel job (``<parent>#<index>``)."""
    status_reason: str | None = None
    started_at: int | None = None
    stopped_at: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    is_cancelled: bool = False
    is_terminated: bool = False
    history: list[HistoryEntry] = field(default_factory=list)
    status_summary: dict[str, int] | None = None
    """Array parents only: children per status."""
    summary_updated_at: int | None = None
    history_saved: int = 0
    """How many history entries are already in the store."""
    gang: dict[str, str] = field(default_factory=dict)
    """MNP parents only: node index (as text) → node id held for the current attempt."""
    gang_state: dict[str, Any] = field(default_factory=dict)
    """MNP parents only, for the current attempt: ``port`` (MASTER_PORT), ``key`` (the job's
    SSH key pair), ``failure`` (why a node failed it), ``outcome`` once decided."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def queue(self) -> str:
        return self.spec.queue

    @property
    def is_array_parent(self) -> bool:
        return self.spec.array_size is not None and self.parent_id is None

    @property
    def is_mnp_parent(self) -> bool:
        return self.spec.nodes is not None and self.parent_id is None

    @property
    def is_node(self) -> bool:
        return self.node_index is not None

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def container(self) -> ContainerSpec:
        """The container this job runs: its node's for an MNP node, else the spec's."""
        if self.node_index is not None and self.spec.nodes is not None:
            return self.spec.nodes.containers[self.node_index]
        return self.spec.container

    @property
    def resources(self) -> Resources:
        return self.container.resources

    def dependency_ids(self) -> list[str]:
        """Every job id whose status this job's start depends on: :meth:`dependencies` and,
        for ``singleton``, the earlier jobs of its name (``extras.singleton_after``)."""
        if self.is_array_parent or self.node_index is not None:
            return []
        return [dep_id for dep_id, _ in self.dependencies()] + list(
            self.spec.extras.singleton_after
        )

    def dependencies(self) -> list[tuple[str, Condition]]:
        """The jobs this job waits for and what each must have done, with array semantics.

        A child ``P:i`` inherits its parent's dependencies: a plain dependency waits for the
        whole job, ``N_TO_N`` on ``X`` waits for ``X:i``, ``SEQUENTIAL`` waits for ``P:i-1``.
        An array parent itself waits for nothing (its children do).
        """
        if self.is_array_parent or self.node_index is not None:
            return []
        out: list[tuple[str, Condition]] = []
        for dep in self.spec.depends_on:
            if self.array_index is not None:
                if dep.type == "SEQUENTIAL" and dep.job_id is None:
                    if self.array_index > 0:
                        out.append((f"{self.parent_id}:{self.array_index - 1}", Condition.OK))
                    continue
                if dep.type == "N_TO_N" and dep.job_id is not None:
                    out.append((f"{dep.job_id}:{self.array_index}", Condition.OK))
                    continue
            if dep.job_id is not None:
                out.append((dep.job_id, dep.condition))
        return out

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status_reason": self.status_reason,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "attempts": [a.to_doc() for a in self.attempts],
        }
        if self.is_cancelled:
            doc["is_cancelled"] = True
        if self.is_terminated:
            doc["is_terminated"] = True
        if self.node_index is not None:
            doc["node_index"] = self.node_index
        if self.gang:
            doc["gang"] = self.gang
        if self.gang_state:
            doc["gang_state"] = self.gang_state
        if self.status_summary is not None:
            doc["status_summary"] = self.status_summary
            doc["summary_updated_at"] = self.summary_updated_at
        return doc


class NodeStatus(enum.StrEnum):
    LAUNCHING = "LAUNCHING"
    """Asked of the provider; the agent has not registered yet."""
    ACTIVE = "ACTIVE"
    """Registered and heartbeating; takes work."""
    LOST = "LOST"
    """Stopped heartbeating (or failed to come up); its attempts failed."""
    STOPPED = "STOPPED"
    """Shut down on purpose."""


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

    def to_doc(self) -> dict[str, Any]:
        return {
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
        )


@dataclass(slots=True)
class ComputeEnvironment:
    name: str
    type: str
    """MANAGED or UNMANAGED."""
    state: State
    provider: str
    """Which provider brings nodes up: ``local`` (more in later versions)."""
    node_count: int
    node_resources: Resources
    created_at: int
    doc: dict[str, Any] = field(default_factory=dict)
    """The create request as given (computeResources, tags, …), echoed on describe."""
    first_address: str = "127.0.0.2"
    next_node_number: int = 1
    shared_filesystem: dict[str, str] | None = None
    """``{"hostPath", "containerPath"}``: the path every node shares, mounted into containers."""

    @property
    def arn(self) -> str:
        return ce_arn(self.name)

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
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
            "shared_filesystem": self.shared_filesystem,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> ComputeEnvironment:
        return cls(
            name=d["name"],
            type=d["type"],
            state=State(d["state"]),
            provider=d["provider"],
            node_count=d["node_count"],
            node_resources=Resources(d["vcpus"], d["memory_mib"], d["gpus"]),
            created_at=d["created_at"],
            doc=d["doc"],
            first_address=d["first_address"],
            next_node_number=d["next_node_number"],
            shared_filesystem=d.get("shared_filesystem"),
        )


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
