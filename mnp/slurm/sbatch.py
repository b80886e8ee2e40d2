"""``mnp sbatch``'s pure part: a batch script and options → the two requests mnp submits.

Reading: :func:`parse_script` finds the ``#SBATCH`` (Slurm's options) and ``#MNP`` (mnp's
own) lines before the first command, as sbatch does; :func:`request_from` reads them and the
command line with one option table (:mod:`mnp.slurm.options`; the command line wins) into a
typed :class:`SbatchRequest`, reporting every bad value at once (:class:`SbatchError`, each
message naming the option, where it was given and the rule).

Mapping (:func:`build_requests` → RegisterJobDefinition, SubmitJob):

- the script is ``mnp.script``; the definition's command is the script's arguments (maybe
  none). ``--wrap CMD`` is the script ``#!/bin/sh\\nCMD\\n``.
- ``-J`` → ``jobName``. Names must be the API's (1-128 letters, digits, ``-``, ``_``, starting
  with a letter or digit): a ``-J`` outside that is an error, never rewritten. The default is
  the script's file name with other characters as ``_`` (``wrap`` for ``--wrap``, ``sbatch``
  for standard input). Hostile text goes through paths, arguments and values, byte-exact.
- ``-p`` → ``jobQueue`` (``default``). Definition name: ``sbatch-<job name>``.
- ``-N`` 1 → a container job; more (or ``#MNP --mpi``/``--every-node``) → a multinode job of N
  nodes, main node 0. The script runs on node 0 only (``0`` has the command, ``1:`` none: those
  nodes serve SSH), or on every node with ``#MNP --every-node``. ``nodeProperties.mnp`` gets
  ``mpi`` (``#MNP --mpi``, default ``none``) and ``tasksPerNode``.
- tasks per node = ``--ntasks-per-node`` or ceil(``-n``/N); per node VCPU = tasks per node ×
  ``-c`` (defaults 1); ``--mem`` (per node) or ``--mem-per-cpu`` × VCPU → MEMORY MiB;
  ``-G`` (total) → GPU ceil(G/N) per node, or ``--gpus-per-node``/``--gres=gpu:N``.
  ``mnp.ntasks``/``ntasksPerNode``/``cpusPerTask`` say it in Slurm's terms.
- ``-t`` → ``timeout.attemptDurationSeconds``; ``--requeue`` → 2 attempts, retried only when a
  node was lost (``Host lost*``); ``--no-requeue`` → 1 attempt.
- ``-a`` → ``arrayProperties.size`` = number of task ids; AWS index i runs Slurm task id
  ``ids[i]``. When the ids are not ``0..n-1`` the job's environment carries
  ``MNP_SLURM_ARRAY_TASK_IDS`` (compact array syntax, :func:`mnp.slurm.values.format_ids`) for
  the head to set ``SLURM_ARRAY_TASK_ID`` and ``%a`` from. One id alone makes a plain job
  with ``SLURM_ARRAY_TASK_ID``/``COUNT``/``MIN``/``MAX`` in its environment and ``%a``/``%A``
  in paths replaced by the id and ``%j`` (AWS arrays have 2–10,000 tasks). ``%N`` →
  ``mnp.arrayMaxRunning``.
- ``-d`` → ``dependsOn`` (:data:`mnp.slurm.values.DEPENDENCY_TYPES`; ``JOB_TASK`` → ``JOB:index``
  via the other job's task ids), ``mnp.dependencyMode`` ``ANY`` for ``?``, ``mnp.singleton``.
- ``-o``/``-e`` → ``mnp.stdout``/``mnp.stderr``, relative to the working directory; default
  ``slurm-%j.out`` (arrays ``slurm-%A_%a.out``). ``-D`` → ``mnp.workingDirectory`` (default the
  submit directory); ``mnp.submitDir`` is where ``mnp sbatch`` ran.
- ``--export`` → the job's environment (``containerOverrides``, or a ``0:`` node override).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mnp.errors import FieldError
from mnp.jobspec import DEFAULT_QUEUE
from mnp.multinode import MPI_CHOICES
from mnp.slurm.options import Parsed, Setting
from mnp.slurm.script import (
    Directive,
    SbatchError,
    check_script,
    parse_script,
    read_script_settings,
)
from mnp.slurm.values import (
    DEPENDENCY_TYPES,
    ArraySpec,
    DependencySpec,
    format_ids,
    parse_array,
    parse_count,
    parse_dependency,
    parse_export_spec,
    parse_gpus,
    parse_gres,
    parse_memory,
    parse_nodes,
    parse_time_limit,
    translate_output,
)

__all__ = [
    "Directive", "SbatchError", "SbatchRequest", "build_requests", "check_script",
    "dry_run_text", "parse_script", "request_from",
]  # fmt: skip

JSON = dict[str, Any]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
NAME_RULE = "1-128 letters, digits, hyphens and underscores, starting with a letter or digit"
SUBMIT_MAX_BYTES = 30 * 1024
"""The head's SubmitJob size limit (mnp.service.SUBMIT_MAX)."""
ARRAY_IDS_VAR = "MNP_SLURM_ARRAY_TASK_IDS"
REQUEUE = {
    "attempts": 2,
    "evaluateOnExit": [
        {"onStatusReason": "Host lost*", "action": "RETRY"},
        {"onStatusReason": "*", "action": "EXIT"},
    ],
}


@dataclass(frozen=True, slots=True)
class SbatchRequest:
    """What the options asked for, typed and checked (see the module's mapping)."""

    job_name: str | None = None
    nodes: int = 1
    ntasks: int | None = None
    ntasks_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_mib: int | None = None
    """Per node."""
    mem_per_cpu_mib: int | None = None
    gpus: int | None = None
    """In all."""
    gpus_per_node: int | None = None
    time_seconds: int | None = None
    array: ArraySpec | None = None
    dependency: DependencySpec | None = None
    output: str | None = None
    """Pattern in the head's form (:func:`mnp.slurm.values.translate_output`)."""
    error: str | None = None
    partition: str = DEFAULT_QUEUE
    chdir: str | None = None
    export: str = "ALL"
    wrap: str | None = None
    requeue: bool | None = None
    parsable: bool = False
    quiet: bool = False
    dry_run: bool = False
    wait: bool = False
    mpi: str | None = None
    every_node: bool = False

    @property
    def tasks_per_node(self) -> int:
        return self.ntasks_per_node or math.ceil((self.ntasks or 1) / self.nodes)

    @property
    def vcpus_per_node(self) -> int:
        return self.tasks_per_node * (self.cpus_per_task or 1)

    @property
    def multinode(self) -> bool:
        return self.nodes > 1 or self.mpi is not None or self.every_node


def _flag(s: Setting) -> bool:
    return s.value == "yes"


_CONVERTERS: Mapping[str, Any] = {
    "nodes": parse_nodes, "ntasks": parse_count, "ntasks_per_node": parse_count,
    "cpus_per_task": parse_count, "mem": parse_memory, "mem_per_cpu": parse_memory,
    "gpus": parse_gpus, "gpus_per_node": parse_gpus, "gres": parse_gres,
    "time": parse_time_limit, "array": parse_array, "dependency": parse_dependency,
    "output": translate_output, "error": translate_output,
}  # fmt: skip


def request_from(
    script_text: str, command_line: Parsed, environ: Mapping[str, str]
) -> tuple[SbatchRequest, list[str]]:
    """The request the script's directives and the command line make (the command line
    overrides the script per option) and the warnings to show. Raises :class:`SbatchError`
    listing every bad value and contradiction (``environ`` resolves ``--export=VAR``)."""
    script = read_script_settings(parse_script(script_text))
    last: dict[str, Setting] = {}
    for s in [*script.settings, *command_line.settings]:
        last[s.key] = s
    warnings = [*script.warnings, *command_line.warnings]
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for key, s in last.items():
        convert = _CONVERTERS.get(key)
        try:
            values[key] = convert(s.value) if convert else s.value
        except ValueError as exc:
            errors.append(FieldError(s.where, str(exc)))

    def where(key: str) -> str:
        return last[key].where

    fields: JSON = {}
    if "nodes" in values:
        fields["nodes"], ranged = values["nodes"]
        if ranged:
            warnings.append(f"{where('nodes')}: mnp allocates exactly {fields['nodes']} nodes")
    elif "ntasks" in values and "ntasks_per_node" in values:
        fields["nodes"] = math.ceil(values["ntasks"] / values["ntasks_per_node"])
    for key in ("ntasks", "ntasks_per_node", "cpus_per_task", "array", "dependency",
                "output", "error", "wrap", "chdir"):  # fmt: skip
        if key in values:
            fields[key] = values[key]
    if "time" in values:
        fields["time_seconds"] = values["time"]
    for key in ("requeue", "parsable", "quiet", "dry_run", "wait", "every_node"):
        if key in last:
            fields[key] = _flag(last[key])
    name = values.get("job_name")
    if name is not None:
        if NAME_RE.fullmatch(name):
            fields["job_name"] = name
        else:
            errors.append(FieldError(where("job_name"), f"{name!r}: job names must be {NAME_RULE}"))
    if "partition" in values:
        if "," in values["partition"] or not values["partition"].strip():
            errors.append(FieldError(where("partition"), "give exactly one partition (job queue)"))
        fields["partition"] = values["partition"].strip()
    if "mpi" in values:
        if values["mpi"] not in MPI_CHOICES:
            errors.append(FieldError(where("mpi"), f"must be one of {', '.join(MPI_CHOICES)}"))
        elif fields.get("every_node"):
            errors.append(FieldError(where("mpi"), "--mpi and --every-node exclude each other"))
        fields["mpi"] = values["mpi"]
    if "mem" in values and "mem_per_cpu" in values:
        also = where("mem_per_cpu")
        errors.append(FieldError(where("mem"), f"give --mem or --mem-per-cpu, not both ({also})"))
    elif values.get("mem") == 0 or values.get("mem_per_cpu") == 0:
        key = "mem" if "mem" in values else "mem_per_cpu"
        warnings.append(f"{where(key)}: 0 (all of a node's memory) is not supported by mnp; "
                        "no memory requirement sent")  # fmt: skip
    else:
        fields["mem_mib"] = values.get("mem")
        fields["mem_per_cpu_mib"] = values.get("mem_per_cpu")
    gpu_keys = [k for k in ("gpus", "gpus_per_node", "gres") if k in values]
    if len(gpu_keys) > 1:
        errors.append(FieldError(where(gpu_keys[1]), "give one of -G/--gpus, --gpus-per-node "
                                 f"and --gres=gpu (also {where(gpu_keys[0])})"))  # fmt: skip
    for key in ("gpus", "gpus_per_node"):
        if key in values:
            fields[key], kind = values[key]
            if kind:
                warnings.append(f"{where(key)}: GPU type {kind!r} ignored (mnp counts GPUs only)")
    if "gres" in values:
        fields["gpus_per_node"], others = values["gres"]
        if others:
            warnings.append(f"{where('gres')}: {', '.join(others)} ignored (mnp knows gpu only)")
    if "export" in values:
        try:
            parse_export_spec(values["export"], environ)
            fields["export"] = values["export"]
        except ValueError as exc:
            errors.append(FieldError(where("export"), str(exc)))
    req = SbatchRequest(**fields)
    errors += _cross_checks(req, where)
    if errors:
        raise SbatchError(errors)
    return req, warnings


def _cross_checks(req: SbatchRequest, where: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    if req.ntasks and req.ntasks > req.nodes * req.tasks_per_node:
        errors.append(FieldError(where("ntasks"), f"{req.ntasks} tasks do not fit {req.nodes} "
                                 f"nodes × {req.tasks_per_node} tasks per node"))  # fmt: skip
    if req.array is not None and len(req.array.ids) > 1 and req.multinode:
        errors.append(FieldError(where("array"), "multi-node jobs cannot be arrays (as in AWS "
                                 "Batch): one node per task, or a job per task"))  # fmt: skip
    deps = req.dependency
    if deps and req.array is None and any(d.kind == "aftercorr" for d in deps.items):
        errors.append(FieldError(where("dependency"), "aftercorr needs this job to be an array"))
    return errors


def default_job_name(script_name: str) -> str:
    """The script's file name in the API's alphabet (other characters as ``_``; ``sbatch``
    when nothing is left)."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", posixpath.basename(script_name))
    return base.lstrip("_-")[:128] or "sbatch"


def wrap_script(command: str) -> str:
    """The script ``--wrap`` submits, as sbatch writes it."""
    return f"#!/bin/sh\n{command}\n"


def _resolve(base: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(base, path))


_ARRAY_PATTERN = re.compile(r"%%|%A|%a")


def _single_task_paths(pattern: str, task: int) -> str:
    """``%A`` → ``%j`` and ``%a`` → the task id, for a one-task array run as a plain job."""
    return _ARRAY_PATTERN.sub(lambda m: {"%A": "%j", "%a": str(task)}.get(m[0], m[0]), pattern)


def _container(req: SbatchRequest, command: Sequence[str] | None) -> JSON:
    out: JSON = {} if command is None else {"command": list(command)}
    vcpus = req.vcpus_per_node
    resources = [{"type": "VCPU", "value": str(vcpus)}]
    mem = req.mem_mib if req.mem_mib else (req.mem_per_cpu_mib or 0) * vcpus
    if mem:
        resources.append({"type": "MEMORY", "value": str(mem)})
    gpus = req.gpus_per_node or (math.ceil(req.gpus / req.nodes) if req.gpus else None)
    if gpus:
        resources.append({"type": "GPU", "value": str(gpus)})
    out["resourceRequirements"] = resources
    return out


def _definition(req: SbatchRequest, name: str, args: Sequence[str]) -> JSON:
    defn: JSON = {"jobDefinitionName": f"sbatch-{name}"[:128]}
    if not req.multinode:
        defn |= {"type": "container", "containerProperties": _container(req, args)}
    else:
        if req.every_node:
            ranges = [{"targetNodes": "0:", "container": _container(req, args)}]
        else:
            ranges = [{"targetNodes": "0", "container": _container(req, args)}]
            if req.nodes > 1:
                ranges.append({"targetNodes": "1:", "container": _container(req, None)})
        defn |= {
            "type": "multinode",
            "nodeProperties": {
                "numNodes": req.nodes, "mainNode": 0, "nodeRangeProperties": ranges,
                "mnp": {"mpi": req.mpi or "none", "tasksPerNode": req.tasks_per_node},
            },
        }  # fmt: skip
    if req.time_seconds is not None:
        defn["timeout"] = {"attemptDurationSeconds": req.time_seconds}
    if req.requeue is not None:
        defn["retryStrategy"] = dict(REQUEUE) if req.requeue else {"attempts": 1}
    return defn


def _depends_on(
    deps: DependencySpec, array_task_ids: Mapping[str, Sequence[int]]
) -> tuple[list[JSON], list[FieldError]]:
    out: list[JSON] = []
    errors: list[FieldError] = []
    for d in deps.items:
        job = d.job_id
        if d.task is not None:
            ids = array_task_ids.get(d.job_id)
            if ids is not None and d.task not in ids:
                errors.append(FieldError("--dependency", f"job {d.job_id} has no array task "
                                         f"{d.task} (its tasks: {format_ids(ids)})"))  # fmt: skip
                continue
            job = f"{d.job_id}:{d.task if ids is None else list(ids).index(d.task)}"
        dep: JSON = {"jobId": job}
        kind = DEPENDENCY_TYPES[d.kind]
        if kind is not None:
            dep["type"] = kind
        out.append(dep)
    return out, errors


def build_requests(
    req: SbatchRequest,
    *,
    script_text: str,
    script_name: str,
    script_args: Sequence[str] = (),
    submit_dir: str,
    environ: Mapping[str, str],
    user: str,
    array_task_ids: Mapping[str, Sequence[int]] | None = None,
) -> tuple[JSON, JSON]:
    """``(RegisterJobDefinition, SubmitJob)`` for ``req`` (the module docstring's mapping).

    ``submit_dir`` is absolute (where ``mnp sbatch`` runs); ``script_name`` the script's path
    as given (``wrap``/``-`` otherwise); ``array_task_ids`` the Slurm task ids of array jobs
    named as ``JOB_TASK`` in ``--dependency`` whose ids are not ``0..n-1``. Pure. Raises
    :class:`SbatchError` for a dependency on a task that job does not have, or a submission
    over the head's size limit (naming what makes it large).
    """
    name = req.job_name or ("wrap" if req.wrap is not None else default_job_name(script_name))
    defn = _definition(req, name, script_args)
    workdir = _resolve(submit_dir, req.chdir) if req.chdir else submit_dir
    env = parse_export_spec(req.export, environ)
    array = req.array
    single = array.ids[0] if array is not None and len(array.ids) == 1 else None
    default_out = "slurm-%A_%a.out" if array is not None else "slurm-%j.out"
    stdout = _resolve(workdir, req.output or default_out)
    stderr = _resolve(workdir, req.error) if req.error else None
    if single is not None:
        stdout = _single_task_paths(stdout, single)
        stderr = None if stderr is None else _single_task_paths(stderr, single)
        env |= {f"SLURM_ARRAY_TASK_{k}": str(single) for k in ("ID", "MIN", "MAX")}
        env["SLURM_ARRAY_TASK_COUNT"] = "1"
    elif array is not None and not array.dense:
        env[ARRAY_IDS_VAR] = format_ids(array.ids)
    sub: JSON = {
        "jobName": name, "jobQueue": req.partition, "jobDefinition": defn["jobDefinitionName"],
    }  # fmt: skip
    if array is not None and single is None:
        sub["arrayProperties"] = {"size": len(array.ids)}
    mnp: JSON = {"user": user}
    if req.dependency is not None:
        deps, errors = _depends_on(req.dependency, array_task_ids or {})
        if errors:
            raise SbatchError(errors)
        if deps:
            sub["dependsOn"] = deps
        if req.dependency.mode == "ANY" and len(deps) > 1:
            mnp["dependencyMode"] = "ANY"
        if req.dependency.singleton:
            mnp["singleton"] = True
    if env:
        overrides = {"environment": [{"name": k, "value": v} for k, v in sorted(env.items())]}
        if req.multinode:
            sub["nodeOverrides"] = {
                "nodePropertyOverrides": [{"targetNodes": "0:", "containerOverrides": overrides}]
            }
        else:
            sub["containerOverrides"] = overrides
    if array is not None and array.max_running is not None and single is None:
        mnp["arrayMaxRunning"] = array.max_running
    mnp |= {"script": script_text, "submitDir": submit_dir, "workingDirectory": workdir,
            "stdout": stdout}  # fmt: skip
    if stderr is not None:
        mnp["stderr"] = stderr
    mnp |= {"ntasks": req.ntasks or req.nodes * req.tasks_per_node,
            "ntasksPerNode": req.tasks_per_node, "cpusPerTask": req.cpus_per_task or 1}  # fmt: skip
    sub["mnp"] = mnp
    _check_size(sub, env, script_text)
    return defn, sub


def _check_size(sub: JSON, env: Mapping[str, str], script_text: str) -> None:
    size = len(json.dumps(sub, separators=(",", ":")).encode())
    if size <= SUBMIT_MAX_BYTES:
        return
    env_kib = len(json.dumps(env).encode()) / 1024
    script_kib = len(script_text.encode()) / 1024
    raise SbatchError(
        f"the submission is {size / 1024:.1f} KiB, over the head's {SUBMIT_MAX_BYTES // 1024} KiB "
        f"limit: the environment takes {env_kib:.1f} KiB (--export=NONE or --export=VAR,… "
        f"sends less), the script {script_kib:.1f} KiB"
    )


def dry_run_text(defn: JSON, sub: JSON) -> str:
    """What ``--test-only``/``--dry-run`` prints."""
    return json.dumps({"registerJobDefinition": defn, "submitJob": sub}, indent=2) + "\n"
