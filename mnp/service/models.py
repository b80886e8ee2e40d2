"""The requests the service takes, as pydantic models of AWS Batch's shapes (plus mnp's own
``mnp`` blocks). Declarations only: :func:`mnp.service.validation.parse` builds them from a JSON
body and adds the rules a schema cannot say.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mnp.spec import NAME_PATTERN

NAME_RE = f"^{NAME_PATTERN}$"
NAME_RULE = "1-128 letters, digits, hyphens and underscores, starting with a letter or digit"


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
    size: int = Field(ge=2)
    """At most ``HeadConfig.max_array_size`` (checked with the head's state, ``jobs.py``)."""


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
    hold: bool = False
    """Submit held (``sbatch -H``): the job waits PENDING until released."""
    scriptPath: str | None = Field(default=None, min_length=1, max_length=4096)
    """Where the batch script was read from (``scontrol show job``'s Command); shown only."""
    idempotencyToken: str | None = None  # rule and meaning: mnp.service.submit.check_token


class UpdateJob(Model):
    """mnp's ``updateJob`` (Slurm's ``scontrol update JobId=…``): what may change of a job
    that has not finished; each field left out stays as it is."""

    jobId: str = Field(min_length=1)
    timeout: Timeout | None = None
    schedulingPriority: int | None = Field(default=None, ge=0, le=9999)
    arrayMaxRunning: int | None = Field(default=None, ge=1)


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


class LocalProviderSettings(Model):
    """mnp's own block on a compute environment: how its nodes are brought up."""

    provider: Literal["local"] = "local"
    nodes: int = Field(default=2, ge=0, le=64)
    vcpus: int = Field(default=4, ge=1)
    memoryMiB: int = Field(default=4096, ge=4)
    gpus: int = Field(default=0, ge=0)
    firstAddress: str = Field(default="127.0.0.2", pattern=r"^(127|10)\.\d+\.\d+\.\d+$")
    sharedFilesystem: dict[str, Any] | None = None
    """``{"kind", "source", "mountPath", "remote"}`` (or the older ``{"hostPath",
    "containerPath"}``): checked by :func:`mnp.spec.sharedfs.shared_fs_errors` when the
    environment is made (on an EC2 environment, the only key of the mnp block)."""


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
