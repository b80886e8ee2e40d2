"""What a SubmitJob becomes: the :class:`~mnp.spec.definitions.JobSpec` built from the request
and its job definition (overrides applied, ``Ref::`` parameters substituted, defaults taken
from the definition where the request leaves them out).

Also the pure rules of submit-once (``mnp.idempotencyToken``): :func:`check_token` and
:func:`fingerprint`; :meth:`mnp.service.jobs.JobOps.submit` applies them with the store's
record (:mod:`mnp.store.tokens`).

Pure: no state is read or written; the caller has checked the queue, definition and
dependencies (:meth:`mnp.service.jobs.JobOps.submit`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from mnp.errors import FieldError, InvalidInput
from mnp.service.base import REF
from mnp.service.models import ContainerOverrides, SubmitJob
from mnp.spec.arns import stored
from mnp.spec.definitions import (
    NO_EXTRAS,
    Dependency,
    JobDefinition,
    JobExtras,
    JobSpec,
    RetryStrategy,
)
from mnp.spec.environments import JobQueue
from mnp.spec.ids import new_id
from mnp.spec.noderanges import NodeSpec, resolve_nodes
from mnp.spec.resources import ContainerSpec, Resources, legacy_fields, resources_from_wire

TOKEN_FIELD = "mnp.idempotencyToken"
TOKEN_RE = re.compile(r"[\x20-\x7e]{1,64}")
TOKEN_RULE = "must be 1-64 printable ASCII characters (space to ~)"
TOKEN_RETENTION_MS = 24 * 3600 * 1000
"""How long a token keeps answering with its first job (after that it is free again)."""


def check_token(token: str | None) -> list[FieldError]:
    """The problem with an idempotency token, if any (None: no token, nothing to check)."""
    if token is None or TOKEN_RE.fullmatch(token):
        return []
    shown = f"got {len(token)} characters" if len(token) > 64 else f"got {token!r}"
    return [FieldError(TOKEN_FIELD, f"{TOKEN_RULE}, {shown}")]


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
"""The fingerprint's text, one encoder made once (``json.dumps`` with options makes one per
call)."""


def fingerprint(req: SubmitJob) -> str:
    """A digest of everything ``req`` asks for except its token: equal for a retry of the same
    request (defaults filled in, key order ignored), different when any field differs."""
    doc = req.model_dump(mode="json", exclude_none=True)
    if "mnp" in doc:
        doc["mnp"].pop("idempotencyToken", None)
    return hashlib.sha256(_CANONICAL.encode(doc).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the checks at submit found: the queue, the definition and the dependencies."""

    queue: JobQueue
    definition: JobDefinition
    depends_on: list[Dependency]
    singleton_after: tuple[str, ...]
    """The jobs a ``singleton`` submission waits for (see JobExtras)."""


def build_spec(req: SubmitJob, ok: Accepted, now: int) -> JobSpec:
    """The spec of a new job; raises InvalidInput when the overrides do not fit the
    definition's type, or nothing would run."""
    doc = ok.definition.doc
    parameters = {**(doc.get("parameters") or {}), **(req.parameters or {})}
    nodes, containers = _containers(req, ok.definition)
    for c in containers:
        if c.resources.vcpus <= 0:
            c.resources = Resources(1.0, c.resources.memory_mib, c.resources.gpus)
        c.command = [
            REF.sub(lambda m: parameters.get(m.group(1), m.group(0)), arg) for arg in c.command
        ]
    retry = RetryStrategy.from_wire(
        req.retryStrategy.model_dump(exclude_none=True)
        if req.retryStrategy
        else doc.get("retryStrategy")
    )
    timeout = (
        req.timeout.attemptDurationSeconds
        if req.timeout and req.timeout.attemptDurationSeconds
        else (doc.get("timeout") or {}).get("attemptDurationSeconds")
    )
    propagate = req.propagateTags if req.propagateTags is not None else doc.get("propagateTags")
    return JobSpec(
        spec_id=new_id(),
        name=req.jobName,
        queue=ok.queue.name,
        definition_arn=stored(ok.definition.arn),
        definition_name=ok.definition.name,
        container=containers[nodes.main_node] if nodes else containers[0],
        parameters=parameters,
        depends_on=ok.depends_on,
        retry=retry,
        timeout_seconds=timeout,
        array_size=req.arrayProperties.size if req.arrayProperties else None,
        tags={**(doc.get("tags") or {}), **(req.tags or {})}
        if req.propagateTags or doc.get("propagateTags")
        else dict(req.tags or {}),
        platform_capabilities=list(doc.get("platformCapabilities") or ["EC2"]),
        submitted_at=now,
        nodes=nodes,
        share_identifier=req.shareIdentifier,
        scheduling_priority=req.schedulingPriorityOverride
        if req.schedulingPriorityOverride is not None
        else doc.get("schedulingPriority"),
        propagate_tags=bool(propagate),
        extras=_extras(req, ok.singleton_after),
    )


def _containers(
    req: SubmitJob, definition: JobDefinition
) -> tuple[NodeSpec | None, list[ContainerSpec]]:
    """The node ranges (multinode definitions) and the containers to run, overrides applied."""
    has_script = req.mnp is not None and req.mnp.script is not None
    doc = definition.doc
    if doc.get("type") == "multinode":
        if req.containerOverrides is not None:
            raise InvalidInput(
                [
                    FieldError(
                        "containerOverrides", "use nodeOverrides for a multinode job definition"
                    )
                ]
            )
        nodes, errors = resolve_nodes(
            doc["nodeProperties"],
            req.nodeOverrides.model_dump(exclude_none=True) if req.nodeOverrides else None,
            has_script=has_script,
        )
        if errors or nodes is None:
            raise InvalidInput(errors)
        return nodes, nodes.containers
    if req.nodeOverrides is not None:
        raise InvalidInput(
            [FieldError("nodeOverrides", f"{definition.name} is not a multinode job definition")]
        )
    container = ContainerSpec.from_wire(doc.get("containerProperties") or {})
    _override(container, req.containerOverrides)
    if not (container.command or container.image or has_script):
        raise InvalidInput(
            [
                FieldError(
                    "containerOverrides.command",
                    f"required: job definition {definition.name}:{definition.revision} "
                    "has neither a command nor an image (mnp runs the command itself)",
                )
            ]
        )
    return None, [container]


def _override(container: ContainerSpec, over: ContainerOverrides | None) -> None:
    """Apply SubmitJob's ``containerOverrides`` (command, environment by name, resources)."""
    if over is None:
        return
    if over.command is not None:
        container.command = list(over.command)
    for kv in over.environment or []:
        container.environment[kv.name] = kv.value
    given = over.model_dump(exclude_none=True)
    container.resources = resources_from_wire(given, base=container.resources)
    container.legacy |= legacy_fields(given)


def _extras(req: SubmitJob, singleton_after: tuple[str, ...]) -> JobExtras:
    m = req.mnp
    if m is None:
        return NO_EXTRAS
    return JobExtras(
        user=m.user,
        array_max_running=m.arrayMaxRunning,
        dependency_mode=m.dependencyMode,
        singleton_after=singleton_after,
        stdout=m.stdout,
        stderr=m.stderr,
        workdir=m.workingDirectory,
        submit_dir=m.submitDir,
        script=m.script,
        ntasks=m.ntasks,
        ntasks_per_node=m.ntasksPerNode,
        cpus_per_task=m.cpusPerTask,
        script_path=m.scriptPath,
    )
