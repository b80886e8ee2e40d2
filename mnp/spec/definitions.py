"""What is registered and submitted: job definitions, retry strategies, dependencies, and
the job spec (definition + submit request, resolved)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from mnp.spec.arns import job_definition_arn
from mnp.spec.noderanges import NodeSpec
from mnp.spec.resources import ContainerSpec


@dataclass(frozen=True, slots=True)
class EvaluateOnExit:
    action: str
    """RETRY or EXIT (upper-cased at the edge; shown lower-cased, as AWS shows it)."""
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
                        ("action", r.action.lower()),
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


def lower_actions(rules: Any) -> Any:
    """``evaluateOnExit`` rules with their ``action`` lower-cased, as AWS answers them whatever
    case was sent (so a tool comparing what it sent sees no change once it lower-cases too)."""
    if not isinstance(rules, list):
        return rules
    return [
        {**r, "action": r["action"].lower()}
        if isinstance(r, dict) and isinstance(r.get("action"), str)
        else r
        for r in rules
    ]


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

    @property
    def registered_by(self) -> str | None:
        """Who registered this revision (``registeredBy`` in :attr:`doc`, set by the head);
        None: the head's owner (also every definition stored before users existed)."""
        value = self.doc.get("registeredBy")
        return value if isinstance(value, str) else None

    def to_wire(self) -> dict[str, Any]:
        out = {**self.doc}
        retry = out.get("retryStrategy")
        if isinstance(retry, dict) and retry.get("evaluateOnExit"):
            rules = lower_actions(retry["evaluateOnExit"])
            out["retryStrategy"] = {**retry, "evaluateOnExit": rules}
        return {
            **out,
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
    script_path: str | None = None
    """Where ``mnp sbatch`` read the script from (shown as Slurm's Command)."""

    _WIRE = (
        ("user", "user"), ("array_max_running", "arrayMaxRunning"),
        ("stdout", "stdout"), ("stderr", "stderr"), ("workdir", "workingDirectory"),
        ("submit_dir", "submitDir"), ("script", "script"), ("ntasks", "ntasks"),
        ("ntasks_per_node", "ntasksPerNode"), ("cpus_per_task", "cpusPerTask"),
        ("script_path", "scriptPath"),
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
    submitted_by: str | None = None
    """The name of the identity that submitted the job (recorded by the head, not claimed by
    the client); None: the head's owner (also every job stored before users existed)."""
    run_as: str | None = None
    """The account the job's attempts run as on the nodes: the definition's ``user``, else
    the submitter; None (the owner's jobs without a ``user``): the agent's own account."""
    number: int | None = None
    """The head's integer id of the submitted job (Slurm's job id; array children and the
    nodes of a multi-node job share it); None: a job stored before heads numbered jobs."""

    def to_doc(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.submitted_by is not None:
            extra["submitted_by"] = self.submitted_by
        if self.run_as is not None:
            extra["run_as"] = self.run_as
        if self.number is not None:
            extra["number"] = self.number
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
            nodes=NodeSpec.from_doc(d["nodes"]) if d.get("nodes") is not None else None,
            share_identifier=d.get("share_identifier"),
            scheduling_priority=d.get("scheduling_priority"),
            propagate_tags=bool(d.get("propagate_tags")),
            extras=JobExtras.from_doc(d.get("mnp")),
            submitted_by=d.get("submitted_by"),
            run_as=d.get("run_as"),
            number=d.get("number"),
        )
