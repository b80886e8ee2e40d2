# ~410 lines: every rule a schema cannot say, one per field family, in one reviewable place.
"""Validation of requests at the edge (pydantic), reporting every problem at once.

:func:`parse` takes the JSON body as received and returns a validated model of
:mod:`mnp.service.models`, or raises :class:`mnp.errors.InvalidInput` listing
``field.path: rule`` for every problem. Limits follow AWS Batch (array 2–10,000, attempts 1–10,
≤ 5 evaluateOnExit, timeout ≥ 60 s, ≤ 20 dependencies, no ``AWS_BATCH*`` environment names,
≤ 50 tags, 24 KiB job definitions, 30 KiB submissions). The checks that need the head's
configuration (:func:`check_timeout`) or concern mnp's own additions (:func:`check_extras`)
run at submit, after :func:`parse`.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mnp.build.container import field_errors as container_field_errors
from mnp.build.outputs import PATTERN, SPECIFIERS
from mnp.errors import FieldError, InvalidInput
from mnp.service.models import (
    NAME_RE,
    NAME_RULE,
    SHARE_RE,
    ContainerOverrides,
    ContainerProperties,
    CreateComputeEnvironment,
    CreateJobQueue,
    CreateSchedulingPolicy,
    KeyValue,
    RegisterJobDefinition,
    ResourceRequirement,
    RetryStrategyModel,
    ShareAttributes,
    SubmitJob,
    TagResource,
    Timeout,
    UpdateJobQueue,
    UpdateSchedulingPolicy,
)
from mnp.spec import jsontext
from mnp.spec.noderanges import check_node_properties, parse_range

PATTERN_RE = re.compile(r"[A-Za-z0-9.: ]*\*?")
EXIT_CODE_RE = re.compile(r"[0-9]*\*?")


M = TypeVar("M", bound=BaseModel)



def parse(model: type[M], body: Any, max_bytes: int | None = None, what: str = "request") -> M:
    """Validate ``body`` as ``model`` plus the cross-field rules; every problem at once."""
    errors: list[FieldError] = []
    if max_bytes is not None:
        size = len(jsontext.dumps_bytes(body))  # as compact UTF-8 JSON
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
    """The rules between fields of ``m`` that its schema cannot say."""
    if isinstance(m, RegisterJobDefinition):
        return _definition_rules(m)
    if isinstance(m, SubmitJob):
        return _submit_rules(m)
    errors: list[FieldError] = []
    if isinstance(m, CreateJobQueue | UpdateJobQueue):
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


def _definition_rules(m: RegisterJobDefinition) -> list[FieldError]:
    errors: list[FieldError] = []
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
        if m.containerProperties.image is None and m.containerProperties.command is None:
            errors.append(
                FieldError(
                    "containerProperties.image",
                    "required unless containerProperties.command is given (without an image, "
                    "mnp runs the command as a plain process)",
                )
            )
    errors += _check_retry(m.retryStrategy, "retryStrategy")
    errors += _check_tags(m.tags)
    return errors


def _submit_rules(m: SubmitJob) -> list[FieldError]:
    errors: list[FieldError] = []
    if m.containerOverrides is not None:
        errors += _check_overrides(m.containerOverrides, "containerOverrides")
    errors += _check_retry(m.retryStrategy, "retryStrategy")
    errors += _check_tags(m.tags)
    for i, dep in enumerate(m.dependsOn or []):
        # AWS's two types shape an array job's children; on any other job, one naming a job
        # is a plain dependency on it (what code written for AWS submits)
        array = m.arrayProperties is not None
        if dep.jobId is None and dep.type != "SEQUENTIAL":
            errors.append(FieldError(f"dependsOn[{i}].jobId", "required unless type is SEQUENTIAL"))
        if dep.type == "SEQUENTIAL" and dep.jobId is not None and array:
            errors.append(
                FieldError(
                    f"dependsOn[{i}].jobId",
                    "must be absent when type is SEQUENTIAL in an array job",
                )
            )
        if dep.type == "SEQUENTIAL" and dep.jobId is None and not array:
            errors.append(
                FieldError(f"dependsOn[{i}].type", "SEQUENTIAL without a jobId needs an array job")
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
    errors += _check_command(o.command, f"{path}.command")
    errors += _check_resources(o.resourceRequirements, f"{path}.resourceRequirements")
    if o.command is not None and any(c == "" for c in o.command):
        errors.append(FieldError(f"{path}.command", "must not contain empty strings"))
    return errors


def _check_container(c: ContainerProperties, path: str) -> list[FieldError]:
    """The container's own rules. Its command may be absent: an image's CMD runs, or the
    submission brings one (checked at submit, :func:`mnp.service.submit.build_spec`); a
    job definition's container needs one of the two (:func:`_definition_rules`)."""
    errors = _check_env(c.environment, f"{path}.environment")
    errors += _check_command(c.command, f"{path}.command")
    errors += _check_resources(c.resourceRequirements, f"{path}.resourceRequirements")
    errors += [FieldError(p, m) for p, m in container_field_errors(c.model_dump(), path)]
    if c.image is not None and not c.image.strip():  # AWS refuses it; it never meant "none"
        errors.append(
            FieldError(
                f"{path}.image",
                "must not be empty: name an image, or leave image out to run the command "
                "as a plain process",
            )
        )
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
    """What execve can carry: a name without ``=`` or NUL (non-empty by the schema), a value
    without NUL; and AWS's reserved prefix."""
    errors: list[FieldError] = []
    for i, kv in enumerate(env or []):
        where = f"{path}[{i}]"
        if kv.name.upper().startswith("AWS_BATCH"):
            errors.append(FieldError(f"{where}.name", "names starting with AWS_BATCH are reserved"))
        if "=" in kv.name:
            errors.append(FieldError(f"{where}.name", "must not contain '='"))
        if "\0" in kv.name:
            errors.append(FieldError(f"{where}.name", "must not contain NUL"))
        if "\0" in kv.value:
            errors.append(FieldError(f"{where}.value", "must not contain NUL"))
    return errors


def _check_command(command: list[str] | None, path: str) -> list[FieldError]:
    """An argv: no NUL in any argument (execve would cut it there)."""
    return [
        FieldError(f"{path}[{i}]", "must not contain NUL")
        for i, arg in enumerate(command or [])
        if "\0" in arg
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


def check_extras(req: SubmitJob) -> list[FieldError]:
    """Every problem with ``req.mnp`` (and the fields it relates to), each naming its field.
    The output path patterns are those :func:`mnp.build.outputs.expand_path` expands."""
    m = req.mnp
    if m is None:
        return []
    errors: list[FieldError] = []
    if m.arrayMaxRunning is not None and req.arrayProperties is None:
        errors.append(FieldError("mnp.arrayMaxRunning", "only for array jobs (arrayProperties)"))
    for name, value in (
        ("stdout", m.stdout),
        ("stderr", m.stderr),
        ("workingDirectory", m.workingDirectory),
        ("submitDir", m.submitDir),
    ):
        if value is not None:
            errors += _check_path(f"mnp.{name}", value, patterns=name in ("stdout", "stderr"))
    if m.dependencyMode == "ANY" and not req.dependsOn:
        errors.append(FieldError("mnp.dependencyMode", "ANY needs dependsOn"))
    return errors


def _check_path(path: str, value: str, patterns: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    if not value.startswith("/"):
        errors.append(FieldError(path, f"must be an absolute path, got {value!r}"))
    if "\0" in value:
        errors.append(FieldError(path, "must not contain NUL"))
    if patterns:
        bad = sorted({s for s in PATTERN.findall(value) if s not in SPECIFIERS})
        if PATTERN.sub("", value).endswith("%"):
            bad.append("")  # a lone % at the end
        if bad:
            known = " ".join(f"%{k}" for k in SPECIFIERS)
            errors.append(
                FieldError(
                    path, f"unknown pattern {', '.join('%' + b for b in bad)}: known are {known}"
                )
            )
    return errors
