"""Python job-spec files: jobs written as Python, submitted in order.

A job-spec file is Python that defines, at module level:

- ``JOB`` (one dict) or ``JOBS`` (a list of dicts), each in SubmitJob shape;
- or ``JOB``/``JOBS`` as specs of the Python API (:class:`mnp.client.dsl.Job`, ``ArrayJob``,
  ``MpiJob``: one kind or the other in a file), whose dependencies are objects or names;
- optionally ``JOB_DEFINITIONS``, a list of RegisterJobDefinition dicts, registered first.

Inside ``dependsOn``, ``{"jobId": "@<jobName>"}`` names a job defined earlier in the same
file; it is replaced by that job's id at submit time. ``jobQueue`` defaults to ``"default"``.
``os.PathLike`` values (e.g. ``Path(__file__).parent / "step.sh"`` in a command) become
strings. The file's ``__file__`` is set, so it can name scripts next to itself.

:func:`load_jobspec` runs the file and checks it (no I/O beyond reading the file) and reports
every problem at once; :func:`submit_jobspec` registers and submits through a client.
"""

from __future__ import annotations

import copy
import json
import os
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnp.client.dsl import Job
from mnp.client.plan import plan
from mnp.errors import FieldError, InvalidInput, MnpError
from mnp.spec import DEFAULT_QUEUE
from mnp.spec.definitions import DEPENDENCY_TYPES as DEPENDENCY_TYPE_NAMES

if TYPE_CHECKING:
    from mnp.client.client import Client

JSON = dict[str, Any]

REF_PREFIX = "@"

SUBMIT_FIELDS = frozenset({
    "jobName", "jobQueue", "jobDefinition", "shareIdentifier", "schedulingPriorityOverride",
    "arrayProperties", "dependsOn", "parameters", "containerOverrides", "nodeOverrides",
    "retryStrategy", "propagateTags", "timeout", "tags", "ecsPropertiesOverride",
    "eksPropertiesOverride", "consumableResourcePropertiesOverride",
})  # fmt: skip
DEPENDENCY_TYPES = frozenset(DEPENDENCY_TYPE_NAMES)
DEFINITION_TYPES = frozenset({"container", "multinode"})


class JobSpecError(InvalidInput):
    """A job-spec file is wrong; ``errors`` lists every problem, each with its field path."""

    def __init__(self, path: Path, errors: list[FieldError], message: str | None = None) -> None:
        super().__init__(errors)
        self.path = path
        self.message = message or f"invalid job-spec file {path}"

    def __str__(self) -> str:
        return f"{self.message}: " + "; ".join(str(e) for e in self.errors)


@dataclass(frozen=True, slots=True)
class JobSpecFile:
    """A checked job-spec file: plain JSON-ready dicts, ``jobQueue`` filled in."""

    path: Path
    job_definitions: list[JSON]
    jobs: list[JSON]
    """In file order; ``@name`` references are still unresolved."""
    specs: list[Job] = field(default_factory=list)
    """Python API specs (then ``jobs`` is empty), in dependency order
    (:func:`mnp.client.plan.plan`): submit them with :func:`mnp.client.run.submit`."""


def load_jobspec(path: Path | str) -> JobSpecFile:
    """Run the job-spec file at ``path`` and check what it defines.

    Raises :class:`JobSpecError` listing every problem (paths like ``JOBS[2].jobName``),
    including a file that cannot be read or raises while it runs.
    """
    path = Path(path)
    try:
        namespace = runpy.run_path(str(path), run_name="__mnp_jobspec__")
    except (Exception, SystemExit) as exc:
        raise JobSpecError(
            path, [FieldError("", f"running the file failed: {type(exc).__name__}: {exc}")]
        ) from exc
    errors: list[FieldError] = []
    jobs = _jobs_of(namespace, errors)
    definitions = _definitions_of(namespace, errors)
    specs = [job for _, job in jobs if isinstance(job, Job)]
    if specs:
        specs = _planned(specs, jobs, errors)
        jobs = []
    checked_jobs: list[JSON] = []
    names_so_far: list[str] = []
    for where, job in jobs:
        checked = _check_job(where, _plain(job), names_so_far, errors)
        if checked is not None:
            checked_jobs.append(checked)
            names_so_far.append(str(checked.get("jobName")))
    if errors:
        raise JobSpecError(path, errors)
    return JobSpecFile(path=path, job_definitions=definitions, jobs=checked_jobs, specs=specs)


def _jobs_of(namespace: Mapping[str, Any], errors: list[FieldError]) -> list[tuple[str, Any]]:
    """``JOB`` or ``JOBS`` as ``[(where, job)]``, unchecked; problems go to ``errors``."""
    if "JOB" in namespace and "JOBS" in namespace:
        errors.append(FieldError("JOB", "define JOB or JOBS, not both"))
    elif "JOB" in namespace:
        return [("JOB", namespace["JOB"])]
    elif "JOBS" in namespace:
        raw = namespace["JOBS"]
        if not isinstance(raw, list | tuple):
            errors.append(FieldError("JOBS", f"must be a list of dicts, got {_kind(raw)}"))
        elif not raw:
            errors.append(FieldError("JOBS", "must not be empty"))
        else:
            return [(f"JOBS[{i}]", job) for i, job in enumerate(raw)]
    else:
        errors.append(FieldError("", "defines neither JOB nor JOBS"))
    return []


def _definitions_of(namespace: Mapping[str, Any], errors: list[FieldError]) -> list[JSON]:
    """``JOB_DEFINITIONS`` (default none), each checked; problems go to ``errors``."""
    raw_defs = namespace.get("JOB_DEFINITIONS", [])
    if not isinstance(raw_defs, list | tuple):
        errors.append(
            FieldError("JOB_DEFINITIONS", f"must be a list of dicts, got {_kind(raw_defs)}")
        )
        return []
    definitions: list[JSON] = []
    for i, defn in enumerate(raw_defs):
        checked = _check_definition(f"JOB_DEFINITIONS[{i}]", _plain(defn), errors)
        if checked is not None:
            definitions.append(checked)
    return definitions


def _planned(specs: list[Job], jobs: list[tuple[str, Any]], errors: list[FieldError]) -> list[Job]:
    """Python API ``specs`` in dependency order (:func:`mnp.client.plan.plan`), unless ``jobs``
    mixes them with dicts; problems go to ``errors``."""
    dicts = [where for where, job in jobs if not isinstance(job, Job)]
    if dicts:
        errors.append(FieldError(dicts[0], "mixes dicts and Job objects; use one kind"))
        return specs
    try:
        return plan(specs)
    except InvalidInput as exc:
        errors += [FieldError(f"JOBS: {e.path}", e.message) for e in exc.errors]
        return specs


def submit_jobspec(client: Client, spec: JobSpecFile) -> list[tuple[str, str]]:
    """Register ``spec``'s definitions, then submit its jobs in order, replacing each
    ``@name`` dependency with that job's id; returns ``[(jobName, jobId)]`` in file order.

    Submission stops at the first rejected job: a 400 answer is raised as a
    :class:`JobSpecError` whose paths name the job (``JOBS[1].dependsOn``); any error carries
    a note listing the jobs already submitted.
    """
    submitted: list[tuple[str, str]] = []
    ids: dict[str, str] = {}
    for defn in spec.job_definitions:
        client.register_job_definition(defn)
    for i, job in enumerate(spec.jobs):
        body = copy.deepcopy(job)
        for dep in body.get("dependsOn") or []:
            ref = dep.get("jobId")
            if isinstance(ref, str) and ref.startswith(REF_PREFIX):
                dep["jobId"] = ids[ref[len(REF_PREFIX) :]]
        where = f"JOBS[{i}]" if len(spec.jobs) > 1 else "JOB"
        try:
            job_id = client.submit(body)
        except InvalidInput as exc:
            done = ", ".join(f"{n} ({j})" for n, j in submitted) or "none"
            raise JobSpecError(
                spec.path,
                [
                    FieldError(f"{where}.{e.path}" if e.path else where, e.message)
                    for e in exc.errors
                ],
                f"{spec.path}: {where} ({job['jobName']}) was rejected; already submitted: {done}",
            ) from exc
        except MnpError as exc:
            done = ", ".join(f"{n} ({j})" for n, j in submitted) or "none"
            exc.add_note(f"{spec.path}: submitting {where} failed; already submitted: {done}")
            raise
        ids[job["jobName"]] = job_id
        submitted.append((job["jobName"], job_id))
    return submitted


def resolve_command_paths(command: list[str], base: Path) -> list[str]:
    """Make relative script paths in an argv absolute, since jobs run in their own directories.

    An argument becomes ``base/arg`` (resolved) when it is relative, names an existing file
    under ``base``, and either contains a ``/`` or is not the program (``argv[0]`` without a
    ``/`` is looked up in PATH). Options (``-x``) are left alone.
    """
    out: list[str] = []
    for i, arg in enumerate(command):
        candidate = base / arg
        if (
            arg
            and not arg.startswith("-")
            and not Path(arg).is_absolute()
            and ("/" in arg or i > 0)
            and candidate.is_file()
        ):
            out.append(str(candidate.resolve()))
        else:
            out.append(arg)
    return out


def resolve_definition_paths(defn: JSON, base: Path) -> JSON:
    """A copy of a RegisterJobDefinition body with :func:`resolve_command_paths` applied to
    ``containerProperties.command`` and every node range's ``container.command``."""
    out = copy.deepcopy(defn)
    containers = [out.get("containerProperties")]
    ranges = (out.get("nodeProperties") or {}).get("nodeRangeProperties") or []
    containers += [r.get("container") for r in ranges if isinstance(r, dict)]
    _resolve_in(containers, base)
    return out


def resolve_submit_paths(job: JSON, base: Path) -> JSON:
    """A copy of a SubmitJob body with :func:`resolve_command_paths` applied to
    ``containerOverrides.command`` and every node override's command."""
    out = copy.deepcopy(job)
    containers = [out.get("containerOverrides")]
    overrides = (out.get("nodeOverrides") or {}).get("nodePropertyOverrides") or []
    containers += [o.get("containerOverrides") for o in overrides if isinstance(o, dict)]
    _resolve_in(containers, base)
    return out


def _resolve_in(containers: list[Any], base: Path) -> None:
    for container in containers:
        if isinstance(container, dict) and _is_str_list(container.get("command")):
            container["command"] = resolve_command_paths(container["command"], base)


# -- checks ----------------------------------------------------------------------------------


def _check_job(where: str, job: Any, earlier: list[str], errors: list[FieldError]) -> JSON | None:
    if not isinstance(job, dict):
        errors.append(FieldError(where, f"must be a dict in SubmitJob shape, got {_kind(job)}"))
        return None
    before = len(errors)
    for key in job:
        if key not in SUBMIT_FIELDS:
            errors.append(FieldError(f"{where}.{key}", "unknown SubmitJob field"))
    for key in ("jobName", "jobDefinition"):
        _require_str(job, key, where, errors)
    if "jobQueue" in job:
        _require_str(job, "jobQueue", where, errors)
    _check_type(job, "parameters", dict, where, errors)
    _check_type(job, "tags", dict, where, errors)
    _check_type(job, "retryStrategy", dict, where, errors)
    _check_type(job, "timeout", dict, where, errors)
    if _check_type(job, "arrayProperties", dict, where, errors):
        size = job["arrayProperties"].get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            errors.append(FieldError(f"{where}.arrayProperties.size", "must be an integer"))
    if _check_type(job, "containerOverrides", dict, where, errors):
        command = job["containerOverrides"].get("command")
        if command is not None and not _is_str_list(command):
            errors.append(
                FieldError(f"{where}.containerOverrides.command", "must be a list of strings")
            )
    if _check_type(job, "dependsOn", list, where, errors):
        for j, dep in enumerate(job["dependsOn"]):
            _check_dependency(f"{where}.dependsOn[{j}]", dep, earlier, errors)
    _check_json(job, where, errors)
    if len(errors) > before:
        return None
    job.setdefault("jobQueue", DEFAULT_QUEUE)
    return job


def _check_dependency(where: str, dep: Any, earlier: list[str], errors: list[FieldError]) -> None:
    if not isinstance(dep, dict):
        errors.append(FieldError(where, f"must be a dict {{jobId, type}}, got {_kind(dep)}"))
        return
    dep_type = dep.get("type")
    if dep_type is not None and dep_type not in DEPENDENCY_TYPES:
        errors.append(FieldError(f"{where}.type", f"must be one of {sorted(DEPENDENCY_TYPES)}"))
    ref = dep.get("jobId")
    if ref is None:
        if dep_type != "SEQUENTIAL":
            errors.append(FieldError(f"{where}.jobId", "required (unless type is SEQUENTIAL)"))
        return
    if not isinstance(ref, str) or not ref:
        errors.append(FieldError(f"{where}.jobId", "must be a non-empty string"))
        return
    if ref.startswith(REF_PREFIX):
        name = ref[len(REF_PREFIX) :]
        count = earlier.count(name)
        if count == 0:
            errors.append(
                FieldError(
                    f"{where}.jobId", f"{ref}: no job named {name!r} is defined before this one"
                )
            )
        elif count > 1:
            errors.append(
                FieldError(
                    f"{where}.jobId", f"{ref} is ambiguous: {count} earlier jobs are named {name!r}"
                )
            )


def _check_definition(where: str, defn: Any, errors: list[FieldError]) -> JSON | None:
    if not isinstance(defn, dict):
        errors.append(
            FieldError(where, f"must be a dict in RegisterJobDefinition shape, got {_kind(defn)}")
        )
        return None
    before = len(errors)
    _require_str(defn, "jobDefinitionName", where, errors)
    if _require_str(defn, "type", where, errors) and defn["type"] not in DEFINITION_TYPES:
        errors.append(FieldError(f"{where}.type", f"must be one of {sorted(DEFINITION_TYPES)}"))
    if _check_type(defn, "containerProperties", dict, where, errors):
        command = defn["containerProperties"].get("command")
        if command is not None and not _is_str_list(command):
            errors.append(
                FieldError(f"{where}.containerProperties.command", "must be a list of strings")
            )
    _check_type(defn, "nodeProperties", dict, where, errors)
    _check_json(defn, where, errors)
    return defn if len(errors) == before else None


def _require_str(d: JSON, key: str, where: str, errors: list[FieldError]) -> bool:
    value = d.get(key)
    if value is None:
        errors.append(FieldError(f"{where}.{key}", "required"))
        return False
    if not isinstance(value, str) or not value:
        errors.append(
            FieldError(f"{where}.{key}", f"must be a non-empty string, got {_kind(value)}")
        )
        return False
    return True


def _check_type(d: JSON, key: str, kind: type, where: str, errors: list[FieldError]) -> bool:
    """True when ``key`` is present with the right type; records an error when it is wrong."""
    if key not in d:
        return False
    if not isinstance(d[key], kind):
        errors.append(
            FieldError(f"{where}.{key}", f"must be a {kind.__name__}, got {_kind(d[key])}")
        )
        return False
    return True


def _check_json(d: JSON, where: str, errors: list[FieldError]) -> None:
    for key, value in d.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            errors.append(FieldError(f"{where}.{key}", f"not JSON-serialisable: {exc}"))


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(a, str) for a in value)


def _plain(value: Any) -> Any:
    """A deep copy with tuples as lists and path-like objects as strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _kind(value: Any) -> str:
    return type(value).__name__
