"""Validation of requests at the edge (pydantic), reporting every problem at once.

Each ``parse_*`` function takes the JSON body as received and returns a validated pydantic
model, or raises :class:`mnp.errors.InvalidInput` listing ``field.path: rule`` for every
problem. Limits follow AWS Batch (array 2–10,000, attempts 1–10, ≤ 5 evaluateOnExit,
timeout ≥ 60 s, ≤ 20 dependencies, no ``AWS_BATCH*`` environment names, ≤ 50 tags, 24 KiB
job definitions, 30 KiB submissions).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mnp.build.container import field_errors as container_field_errors
from mnp.errors import FieldError, InvalidInput
from mnp.spec.noderanges import check_node_properties, parse_range

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
NAME_RULE = "1-128 letters, digits, hyphens and underscores, starting with a letter or digit"
PATTERN_RE = re.compile(r"[A-Za-z0-9.: ]*\*?")
EXIT_CODE_RE = re.compile(r"[0-9]*\*?")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Open(BaseModel):
    """AWS shapes whose less common fields mnp keeps without interpreting."""

    model_config = ConfigDict(extra="allow")


class KeyValue(Model):
    name: str = Field(min_length=1)
    value: str = ""


class ResourceRequirement(Model):
    type: Literal["VCPU", "MEMORY", "GPU"]
    value: str


class Volume(Open):
    name: str | None = None


class MountPoint(Open):
    containerPath: str | None = None
    sourceVolume: str | None = None
    readOnly: bool = False


class ContainerProperties(Open):
    image: str | None = Field(default=None, max_length=255)
    command: list[str] | None = None
    environment: list[KeyValue] | None = None
    resourceRequirements: list[ResourceRequirement] | None = None
    vcpus: int | None = Field(default=None, ge=1)
    memory: int | None = Field(default=None, ge=4)
    volumes: list[Volume] | None = None
    mountPoints: list[MountPoint] | None = None


class EvaluateOnExitModel(Model):
    onStatusReason: str | None = Field(default=None, max_length=512)
    onReason: str | None = Field(default=None, max_length=512)
    onExitCode: str | None = Field(default=None, max_length=512)
    action: str


class RetryStrategyModel(Model):
    attempts: int | None = Field(default=None, ge=1, le=10)
    evaluateOnExit: list[EvaluateOnExitModel] | None = Field(default=None, max_length=5)


class Timeout(Model):
    attemptDurationSeconds: int | None = Field(default=None, ge=1)


class NodeRange(Model):
    targetNodes: str = Field(min_length=1)
    container: ContainerProperties | None = None
    instanceTypes: list[str] | None = Field(default=None, max_length=1)
    ecsProperties: dict[str, Any] | None = None
    eksProperties: dict[str, Any] | None = None
    consumableResourceProperties: dict[str, Any] | None = None


class MnpNodeSettings(Model):
    """mnp's own: how the main node's command starts (see mnp.spec.noderanges.NodeSpec)."""

    mpi: Literal["none", "auto", "openmpi", "mpich", "intelmpi"] = "none"
    tasksPerNode: int | None = Field(default=None, ge=1, le=1024)
    readyTimeoutSeconds: float = Field(default=60.0, gt=0, le=3600)


class NodeProperties(Model):
    numNodes: int = Field(ge=1, le=1000)
    mainNode: int = Field(ge=0)
    nodeRangeProperties: list[NodeRange] = Field(min_length=1, max_length=5)
    mnp: MnpNodeSettings | None = None


class RegisterJobDefinition(Model):
    jobDefinitionName: str = Field(pattern=NAME_RE)
    type: Literal["container", "multinode"]
    parameters: dict[str, str] | None = None
    schedulingPriority: int | None = Field(default=None, ge=0, le=9999)
    containerProperties: ContainerProperties | None = None
    nodeProperties: NodeProperties | None = None
    retryStrategy: RetryStrategyModel | None = None
    propagateTags: bool | None = None
    timeout: Timeout | None = None
    tags: dict[str, str] | None = None
    platformCapabilities: list[Literal["EC2", "FARGATE"]] | None = None
    eksProperties: dict[str, Any] | None = None
    ecsProperties: dict[str, Any] | None = None
    consumableResourceProperties: dict[str, Any] | None = None


class ContainerOverrides(Model):
    command: list[str] | None = None
    environment: list[KeyValue] | None = None
    resourceRequirements: list[ResourceRequirement] | None = None
    vcpus: int | None = Field(default=None, ge=1)
    memory: int | None = Field(default=None, ge=4)
    instanceType: str | None = None


class NodePropertyOverride(Model):
    targetNodes: str = Field(min_length=1)
    containerOverrides: ContainerOverrides | None = None
    instanceTypes: list[str] | None = None
    ecsPropertiesOverride: dict[str, Any] | None = None
    eksPropertiesOverride: dict[str, Any] | None = None
    consumableResourcePropertiesOverride: dict[str, Any] | None = None


class NodeOverrides(Model):
    numNodes: int | None = Field(default=None, ge=1, le=1000)
    nodePropertyOverrides: list[NodePropertyOverride] | None = None


class ArrayProperties(Model):
    size: int = Field(ge=2, le=10_000)


class JobDependencyModel(Model):
    jobId: str | None = None
    type: (
        Literal["N_TO_N", "SEQUENTIAL", "AFTER_OK", "AFTER_ANY", "AFTER_NOT_OK", "AFTER_START"]
        | None
    ) = None


class MnpSubmit(Model):
    """mnp's additions to SubmitJob (see docs/native-api.md)."""

    user: str | None = Field(default=None, min_length=1, max_length=256)
    arrayMaxRunning: int | None = Field(default=None, ge=1)
    dependencyMode: Literal["ALL", "ANY"] = "ALL"
    singleton: bool = False
    stdout: str | None = Field(default=None, min_length=1, max_length=4096)
    stderr: str | None = Field(default=None, min_length=1, max_length=4096)
    workingDirectory: str | None = Field(default=None, min_length=1, max_length=4096)
    submitDir: str | None = Field(default=None, min_length=1, max_length=4096)
    script: str | None = Field(default=None, min_length=1)
    ntasks: int | None = Field(default=None, ge=1)
    ntasksPerNode: int | None = Field(default=None, ge=1)
    cpusPerTask: int | None = Field(default=None, ge=1)


class SubmitJob(Model):
    jobName: str = Field(pattern=NAME_RE)
    jobQueue: str = Field(min_length=1)
    jobDefinition: str = Field(min_length=1)
    shareIdentifier: str | None = Field(default=None, min_length=1, max_length=255)
    schedulingPriorityOverride: int | None = Field(default=None, ge=0, le=9999)
    arrayProperties: ArrayProperties | None = None
    dependsOn: list[JobDependencyModel] | None = Field(default=None, max_length=20)
    parameters: dict[str, str] | None = None
    containerOverrides: ContainerOverrides | None = None
    nodeOverrides: NodeOverrides | None = None
    retryStrategy: RetryStrategyModel | None = None
    propagateTags: bool | None = None
    timeout: Timeout | None = None
    tags: dict[str, str] | None = None
    mnp: MnpSubmit | None = None


class ComputeEnvironmentOrder(Model):
    order: int = Field(ge=0)
    computeEnvironment: str = Field(min_length=1)


class JobStateTimeLimitAction(Model):
    reason: str = Field(min_length=1)
    state: Literal["RUNNABLE"]
    maxTimeSeconds: int = Field(ge=600, le=86400)
    action: Literal["CANCEL", "TERMINATE"]


class CreateJobQueue(Model):
    jobQueueName: str = Field(pattern=NAME_RE)
    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    priority: int = Field(ge=0, le=1000)
    computeEnvironmentOrder: list[ComputeEnvironmentOrder] = Field(min_length=1, max_length=3)
    schedulingPolicyArn: str | None = None
    tags: dict[str, str] | None = None
    jobStateTimeLimitActions: list[JobStateTimeLimitAction] | None = None
    jobQueueType: Literal["ECS"] | None = None


class UpdateJobQueue(Model):
    jobQueue: str = Field(min_length=1)
    state: Literal["ENABLED", "DISABLED"] | None = None
    priority: int | None = Field(default=None, ge=0, le=1000)
    computeEnvironmentOrder: list[ComputeEnvironmentOrder] | None = Field(
        default=None, min_length=1, max_length=3
    )
    schedulingPolicyArn: str | None = None
    jobStateTimeLimitActions: list[JobStateTimeLimitAction] | None = None


SHARE_RE = r"^[A-Za-z0-9]{1,255}\*?$"


class ShareAttributes(Model):
    shareIdentifier: str = Field(pattern=SHARE_RE)
    weightFactor: float | None = Field(default=None, ge=0.0001, le=999.9999)


class FairsharePolicy(Model):
    shareDecaySeconds: int | None = Field(default=None, ge=0, le=604800)
    computeReservation: int | None = Field(default=None, ge=0, le=99)
    shareDistribution: list[ShareAttributes] | None = None


class CreateSchedulingPolicy(Model):
    name: str = Field(pattern=NAME_RE)
    fairsharePolicy: FairsharePolicy | None = None
    tags: dict[str, str] | None = None


class UpdateSchedulingPolicy(Model):
    arn: str = Field(min_length=1)
    fairsharePolicy: FairsharePolicy | None = None


class TagResource(Model):
    resourceArn: str = Field(min_length=1)
    tags: dict[str, str] = Field(min_length=1)


class UntagResource(Model):
    resourceArn: str = Field(min_length=1)
    tagKeys: list[str] = Field(min_length=1, max_length=50)


class SharedFilesystem(Model):
    """A path every node of the environment shares (``/fsx`` style); container jobs see it
    at ``containerPath`` (default: the same path)."""

    hostPath: str = Field(pattern=r"^/")
    containerPath: str | None = Field(default=None, pattern=r"^/")


class LocalProviderSettings(Model):
    """mnp's own block on a compute environment: how its nodes are brought up."""

    provider: Literal["local"] = "local"
    nodes: int = Field(default=2, ge=0, le=64)
    vcpus: int = Field(default=4, ge=1)
    memoryMiB: int = Field(default=4096, ge=4)
    gpus: int = Field(default=0, ge=0)
    firstAddress: str = Field(default="127.0.0.2", pattern=r"^127\.\d+\.\d+\.\d+$")
    sharedFilesystem: SharedFilesystem | None = None


class CreateComputeEnvironment(Model):
    computeEnvironmentName: str = Field(pattern=NAME_RE)
    type: Literal["MANAGED", "UNMANAGED"]
    state: Literal["ENABLED", "DISABLED"] = "ENABLED"
    unmanagedvCpus: int | None = None
    computeResources: dict[str, Any] | None = None
    serviceRole: str | None = None
    tags: dict[str, str] | None = None
    context: str | None = None
    mnp: LocalProviderSettings = Field(default_factory=LocalProviderSettings)


class LocalProviderUpdate(Model):
    nodes: int | None = Field(default=None, ge=0, le=64)


class UpdateComputeEnvironment(Model):
    computeEnvironment: str = Field(min_length=1)
    mnp: LocalProviderUpdate | None = None
    state: Literal["ENABLED", "DISABLED"] | None = None
    unmanagedvCpus: int | None = None
    computeResources: dict[str, Any] | None = None
    serviceRole: str | None = None
    updatePolicy: dict[str, Any] | None = None
    context: str | None = None


class JobReason(Model):
    jobId: str = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=1024)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any, max_bytes: int | None = None, what: str = "request") -> M:
    """Validate ``body`` as ``model`` plus the cross-field rules; every problem at once."""
    errors: list[FieldError] = []
    if max_bytes is not None:
        size = len(json.dumps(body, separators=(",", ":")).encode())
        if size > max_bytes:
            errors.append(
                FieldError(
                    "",
                    f"{what} size must be at most {max_bytes // 1024} KiB, got "
                    f"{(size + 1023) // 1024} KiB",
                )
            )
    try:
        parsed = model.model_validate(body)
    except ValidationError as e:
        errors.extend(FieldError(_loc(err["loc"]), _msg(err)) for err in e.errors())
        errors.extend(_raw_checks(body))
        raise InvalidInput(errors) from None
    errors.extend(_cross_field(parsed))
    if errors:
        raise InvalidInput(errors)
    return parsed


ENV_PATHS = (("containerProperties", "environment"), ("containerOverrides", "environment"))


def _raw_checks(body: Any) -> list[FieldError]:
    """Rules that hold whatever else is wrong, so they are reported with schema errors."""
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        return errors
    for outer, inner in ENV_PATHS:
        block = body.get(outer)
        env = block.get(inner) if isinstance(block, dict) else None
        if isinstance(env, list):
            for i, kv in enumerate(env):
                name = kv.get("name") if isinstance(kv, dict) else None
                if isinstance(name, str) and name.upper().startswith("AWS_BATCH"):
                    errors.append(
                        FieldError(
                            f"{outer}.{inner}[{i}].name",
                            "names starting with AWS_BATCH are reserved",
                        )
                    )
    tags = body.get("tags")
    if isinstance(tags, dict) and len(tags) > 50:
        errors.append(FieldError("tags", f"at most 50 tags, got {len(tags)}"))
    return errors


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


UNSUPPORTED = {
    "eksConfiguration": "EKS is not supported by mnp",
    "eksPropertiesOverride": "EKS is not supported by mnp",
    "ecsPropertiesOverride": "ECS task properties are not supported by mnp",
    "consumableResourcePropertiesOverride": "consumable resources are not supported by mnp",
    "serviceEnvironmentOrder": "service environments (SageMaker) are not supported by mnp",
    "quotaSharePolicy": "quota-share policies (SageMaker queues) are not supported by mnp",
}


def _msg(err: Any) -> str:
    kind = err["type"]
    pattern = str(err.get("ctx", {}).get("pattern", ""))
    if kind == "string_pattern_mismatch" and NAME_RE in pattern:
        return f"must be {NAME_RULE}"
    if kind == "string_pattern_mismatch" and SHARE_RE in pattern:
        return "1-255 letters and digits, optionally ending in *"
    if kind == "extra_forbidden":
        field = err["loc"][-1] if err.get("loc") else ""
        return UNSUPPORTED.get(str(field), "unknown field")
    if kind == "missing":
        return "required"
    return str(err["msg"])


def _cross_field(m: BaseModel) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(m, RegisterJobDefinition):
        if m.type == "container" and m.containerProperties is None:
            errors.append(FieldError("containerProperties", "required when type is container"))
        if m.type == "multinode" and m.nodeProperties is None:
            errors.append(FieldError("nodeProperties", "required when type is multinode"))
        if m.type == "container" and m.nodeProperties is not None:
            errors.append(FieldError("nodeProperties", "only for type multinode"))
        if m.type == "multinode" and m.containerProperties is not None:
            errors.append(
                FieldError(
                    "containerProperties", "not for type multinode: put containers in node ranges"
                )
            )
        if m.nodeProperties is not None:
            errors += check_node_properties(m.nodeProperties.model_dump(exclude_none=True))
            for i, r in enumerate(m.nodeProperties.nodeRangeProperties):
                if r.container is not None:
                    errors += _check_container(
                        r.container,
                        f"nodeProperties.nodeRangeProperties[{i}].container",
                    )
        if m.containerProperties is not None:
            errors += _check_container(m.containerProperties, "containerProperties")
        errors += _check_retry(m.retryStrategy, "retryStrategy")
        errors += _check_tags(m.tags)
    elif isinstance(m, SubmitJob):
        if m.containerOverrides is not None:
            errors += _check_overrides(m.containerOverrides, "containerOverrides")
        errors += _check_retry(m.retryStrategy, "retryStrategy")
        errors += _check_tags(m.tags)
        for i, dep in enumerate(m.dependsOn or []):
            if dep.jobId is None and dep.type != "SEQUENTIAL":
                errors.append(
                    FieldError(f"dependsOn[{i}].jobId", "required unless type is SEQUENTIAL")
                )
            if dep.type == "SEQUENTIAL" and dep.jobId is not None:
                errors.append(
                    FieldError(f"dependsOn[{i}].jobId", "must be absent when type is SEQUENTIAL")
                )
            if dep.type in ("N_TO_N", "SEQUENTIAL") and m.arrayProperties is None:
                errors.append(
                    FieldError(f"dependsOn[{i}].type", "N_TO_N and SEQUENTIAL need an array job")
                )
        if m.nodeOverrides is not None:
            if m.arrayProperties is not None:
                errors.append(FieldError("nodeOverrides", "array jobs cannot be multi-node"))
            for i, o in enumerate(m.nodeOverrides.nodePropertyOverrides or []):
                where = f"nodeOverrides.nodePropertyOverrides[{i}]"
                try:
                    parse_range(o.targetNodes)
                except ValueError as e:
                    errors.append(FieldError(f"{where}.targetNodes", str(e)))
                if o.containerOverrides is not None:
                    errors += _check_overrides(o.containerOverrides, f"{where}.containerOverrides")
    elif isinstance(m, CreateJobQueue | UpdateJobQueue):
        orders = [o.order for o in m.computeEnvironmentOrder or []]
        if len(set(orders)) != len(orders):
            errors.append(FieldError("computeEnvironmentOrder", "each order value must be unique"))
        if isinstance(m, CreateJobQueue):
            errors += _check_tags(m.tags)
    elif isinstance(m, CreateSchedulingPolicy | UpdateSchedulingPolicy):
        if m.fairsharePolicy is not None:
            errors += _check_shares(m.fairsharePolicy.shareDistribution or [])
        if isinstance(m, CreateSchedulingPolicy):
            errors += _check_tags(m.tags)
    elif isinstance(m, TagResource | CreateComputeEnvironment):
        errors += _check_tags(m.tags)
    return errors


def _check_shares(shares: list[ShareAttributes]) -> list[FieldError]:
    """Share identifiers must not overlap: no duplicates, no prefix covering another entry."""
    errors: list[FieldError] = []
    for i, a in enumerate(shares):
        for j, b in enumerate(shares[:i]):
            pa, pb = a.shareIdentifier, b.shareIdentifier
            if (
                pa == pb
                or (pb.endswith("*") and pa.rstrip("*").startswith(pb[:-1]))
                or (pa.endswith("*") and pb.rstrip("*").startswith(pa[:-1]))
            ):
                errors.append(
                    FieldError(
                        f"fairsharePolicy.shareDistribution[{i}].shareIdentifier",
                        f"{pa!r} overlaps {pb!r} (shareDistribution[{j}])",
                    )
                )
    return errors


def _check_overrides(o: ContainerOverrides, path: str) -> list[FieldError]:
    errors = _check_env(o.environment, f"{path}.environment")
    errors += _check_resources(o.resourceRequirements, f"{path}.resourceRequirements")
    if o.command is not None and any(c == "" for c in o.command):
        errors.append(FieldError(f"{path}.command", "must not contain empty strings"))
    return errors


def _check_container(c: ContainerProperties, path: str) -> list[FieldError]:
    """The container's own rules. Its command may be absent: an image's CMD runs, or the
    submission brings one (checked at submit, :func:`mnp.service.jobs.JobOps._spec`)."""
    errors = _check_env(c.environment, f"{path}.environment")
    errors += _check_resources(c.resourceRequirements, f"{path}.resourceRequirements")
    errors += [FieldError(p, m) for p, m in container_field_errors(c.model_dump(), path)]
    names = {v.name for v in c.volumes or []}
    for i, mp in enumerate(c.mountPoints or []):
        if mp.sourceVolume is not None and mp.sourceVolume not in names:
            errors.append(
                FieldError(
                    f"{path}.mountPoints[{i}].sourceVolume", f"no volume named {mp.sourceVolume!r}"
                )
            )
    return errors


def _check_env(env: list[KeyValue] | None, path: str) -> list[FieldError]:
    return [
        FieldError(f"{path}[{i}].name", "names starting with AWS_BATCH are reserved")
        for i, kv in enumerate(env or [])
        if kv.name.upper().startswith("AWS_BATCH")
    ]


def _check_resources(reqs: list[ResourceRequirement] | None, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, r in enumerate(reqs or []):
        where = f"{path}[{i}].value"
        if r.type in seen:
            errors.append(FieldError(f"{path}[{i}].type", f"{r.type} given more than once"))
        seen.add(r.type)
        try:
            number = float(r.value)
        except ValueError:
            errors.append(FieldError(where, f"{r.type} must be a number, got {r.value!r}"))
            continue
        if r.type == "VCPU" and number <= 0:
            errors.append(FieldError(where, "VCPU must be greater than 0"))
        if r.type == "MEMORY" and (number < 4 or not number.is_integer()):
            errors.append(FieldError(where, "MEMORY must be a whole number of MiB, at least 4"))
        if r.type == "GPU" and (number < 0 or not number.is_integer()):
            errors.append(FieldError(where, "GPU must be a whole number, at least 0"))
    return errors


def _check_retry(r: RetryStrategyModel | None, path: str) -> list[FieldError]:
    if r is None:
        return []
    errors: list[FieldError] = []
    if r.evaluateOnExit and r.attempts is None:
        errors.append(
            FieldError(f"{path}.attempts", "RetryAttempts must be provided with retry strategy")
        )
    for i, e in enumerate(r.evaluateOnExit or []):
        where = f"{path}.evaluateOnExit[{i}]"
        if e.action.upper() not in ("RETRY", "EXIT"):
            errors.append(FieldError(f"{where}.action", "must be RETRY or EXIT"))
        if e.onExitCode is not None and not EXIT_CODE_RE.fullmatch(e.onExitCode):
            errors.append(FieldError(f"{where}.onExitCode", "digits, optionally ending in *"))
        for name in ("onReason", "onStatusReason"):
            value = getattr(e, name)
            if value is not None and not PATTERN_RE.fullmatch(value):
                errors.append(
                    FieldError(
                        f"{where}.{name}",
                        "letters, digits, '.', ':' and spaces, optionally ending in *",
                    )
                )
        if e.onExitCode is None and e.onReason is None and e.onStatusReason is None:
            errors.append(
                FieldError(where, "needs at least one of onExitCode, onReason, onStatusReason")
            )
    return errors


def _check_tags(tags: dict[str, str] | None) -> list[FieldError]:
    errors: list[FieldError] = []
    if tags is None:
        return errors
    if len(tags) > 50:
        errors.append(FieldError("tags", f"at most 50 tags, got {len(tags)}"))
    for k, v in tags.items():
        if not 1 <= len(k) <= 128:
            errors.append(FieldError(f"tags.{k}", "keys are 1-128 characters"))
        if k.lower().startswith("aws:"):
            errors.append(FieldError(f"tags.{k}", "keys starting with aws: are reserved"))
        if len(v) > 256:
            errors.append(FieldError(f"tags.{k}", "values are at most 256 characters"))
    return errors


def check_timeout(timeout: Timeout | None, floor: float, path: str = "timeout") -> list[FieldError]:
    if timeout is None or timeout.attemptDurationSeconds is None:
        return []
    if timeout.attemptDurationSeconds < floor:
        return [FieldError(f"{path}.attemptDurationSeconds", f"must be at least {floor:g} seconds")]
    return []
