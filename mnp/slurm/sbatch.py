"""``mnp sbatch``'s pure part: a batch script and options → the two requests mnp submits.

Reading: :func:`parse_script` finds the ``#SBATCH`` (Slurm's options) and ``#MNP`` (mnp's
own) lines before the first command, as sbatch does; :func:`request_from` reads them and the
command line with one option table (:mod:`mnp.slurm.options`; the command line wins) into a
typed :class:`SbatchRequest`, reporting every bad value at once (:class:`SbatchError`, each
message naming the option, where it was given and the rule).

Mapping (:func:`build_requests` → RegisterJobDefinition, SubmitJob):

- the script is ``mnp.script``; the definition's command is the script's arguments (maybe
  none). ``--wrap CMD`` is the script ``#!/bin/sh\\nCMD\\n``.
- ``-J`` → ``jobName``. Any name is taken, as Slurm takes it: one outside the API's alphabet
  (1-128 letters, digits, ``-``, ``_``, starting with a letter or digit) is sent as
  :func:`mnp.slurm.request.aws_job_name` makes it (``run.v2`` → ``run_v2``) and the name as
  given rides in the job's environment as :data:`JOB_NAME_VAR`, for the Slurm views and
  ``SLURM_JOB_NAME``. The default is the script's file name with other characters as ``_``
  (``wrap`` for ``--wrap``, ``sbatch`` for standard input). Hostile text goes through paths,
  arguments and values, byte-exact.
- ``-p`` → ``jobQueue`` (``default``). Definition name: ``sbatch-<job name>``.
- ``-N`` 1 → a container job; more (or ``#MNP --mpi``) → a multinode job of N nodes, main node
  0. The script runs on node 0 only (``0`` has the command, ``1:`` none: those nodes serve
  SSH). ``#MNP --every-node`` (a ``0:`` range: every node runs it) is refused until the head
  runs scripts on every node (:data:`EVERY_NODE_UNSUPPORTED`). ``nodeProperties.mnp`` gets
  ``mpi`` (``#MNP --mpi``, default ``none``) and ``tasksPerNode``.
- tasks per node = ``--ntasks-per-node`` or ceil(``-n``/N); per node VCPU = tasks per node ×
  ``-c`` (defaults 1); ``--mem`` (per node) or ``--mem-per-cpu`` × VCPU → MEMORY MiB;
  ``-G`` (total) → GPU ceil(G/N) per node, or ``--gpus-per-node``/``--gres=gpu:N``.
  ``mnp.ntasks``/``ntasksPerNode``/``cpusPerTask`` say it in Slurm's terms.
- ``-t`` → ``timeout.attemptDurationSeconds``; ``--requeue`` → 2 attempts, retried only when a
  node was lost (``Host lost*``); ``--no-requeue`` → 1 attempt.
- ``-a`` → ``arrayProperties.size`` = number of task ids; AWS index i runs Slurm task id
  ``ids[i]``. When the ids are not ``0..n-1`` the job's environment carries
  ``MNP_SLURM_ARRAY_TASK_IDS`` (compact array syntax, :func:`mnp.slurm.taskids.format_ids`) for
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
  With ``ALL`` (the default) exported bash functions go too: ``BASH_FUNC_<name>%%`` (and the
  older ``BASH_FUNC_<name>()``) variables, how Lmod and environment modules define
  ``module``, which the job's bash turns back into functions as it starts.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mnp.errors import FieldError
from mnp.slurm.request import (
    EVERY_NODE_UNSUPPORTED,
    NAME_RE,
    NAME_RULE,
    SbatchRequest,
    aws_job_name,
    request_from,
)
from mnp.slurm.script import Directive, SbatchError, check_script, parse_script
from mnp.slurm.taskids import format_ids
from mnp.slurm.values import DEPENDENCY_TYPES, ArraySpec, DependencySpec, parse_export_spec

__all__ = [
    "EVERY_NODE_UNSUPPORTED", "NAME_RE", "NAME_RULE", "Directive", "SbatchError",
    "SbatchRequest", "build_requests", "check_script", "dry_run_text", "parse_script",
    "request_from",
]  # fmt: skip

JSON = dict[str, Any]
SUBMIT_MAX_BYTES = 1024 * 1024
"""The head's size limit for a SubmitJob with an ``mnp`` block (mnp.service.core.MNP_SUBMIT_MAX)."""
ARRAY_IDS_VAR = "MNP_SLURM_ARRAY_TASK_IDS"
JOB_NAME_VAR = "MNP_SLURM_JOB_NAME"  # the job sees it as SLURM_JOB_NAME (mnp.build.environment)
"""The job name as given, when ``jobName`` had to be mapped (:func:`aws_job_name`)."""
_FUNCTION_VAR = re.compile(r"BASH_FUNC_[^=\0]+(?:%%|\(\))")
REQUEUE = {
    "attempts": 2,
    "evaluateOnExit": [
        {"onStatusReason": "Host lost*", "action": "RETRY"},
        {"onStatusReason": "*", "action": "EXIT"},
    ],
}


def default_job_name(script_name: str) -> str:
    """The script's file name in the API's alphabet (other characters as ``_``; ``sbatch``
    when nothing is left)."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", posixpath.basename(script_name))
    return base.lstrip("_-")[:128] or "sbatch"


def exported_functions(export: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The bash functions ``--export`` sends: every ``BASH_FUNC_<name>%%`` variable (bash's
    form since 4.3; ``BASH_FUNC_<name>()`` before) when it includes ``ALL``, as Slurm does.
    They are not shell names, so :func:`mnp.slurm.values.inherited_environment` leaves them
    out; without them ``module load`` fails in the job."""
    if not any(item.strip().upper() == "ALL" for item in export.split(",")):
        return {}
    return {k: v for k, v in environ.items() if _FUNCTION_VAR.fullmatch(k)}


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
    given = req.job_name or None
    if given is not None:
        name = aws_job_name(given)
    else:
        name = "wrap" if req.wrap is not None else default_job_name(script_name)
    defn = _definition(req, name, script_args)
    workdir = _resolve(submit_dir, req.chdir) if req.chdir else submit_dir
    array = req.array
    single = array.ids[0] if array is not None and len(array.ids) == 1 else None
    stdout, stderr = _output_paths(req, workdir, single)
    env = parse_export_spec(req.export, environ) | exported_functions(req.export, environ)
    env |= _array_environment(array, single)
    if req.signal is not None:  # srun reads it, as Slurm's srun reads SLURM_SIGNAL
        env["SLURM_SIGNAL"] = req.signal
    if given is not None and given != name:
        env[JOB_NAME_VAR] = given
    sub: JSON = {
        "jobName": name, "jobQueue": req.partition, "jobDefinition": defn["jobDefinitionName"],
    }  # fmt: skip
    if array is not None and single is None:
        sub["arrayProperties"] = {"size": len(array.ids)}
    mnp: JSON = {"user": user}
    if req.dependency is not None:
        _add_dependencies(sub, mnp, req.dependency, array_task_ids or {})
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
    if req.hold:
        mnp["hold"] = True
    if req.wrap is None and script_name not in ("", "-"):  # scontrol's Command
        mnp["scriptPath"] = _resolve(submit_dir, script_name)
    sub["mnp"] = mnp
    _check_size(sub, env, script_text)
    return defn, sub


def _output_paths(req: SbatchRequest, workdir: str, single: int | None) -> tuple[str, str | None]:
    """Absolute ``(stdout, stderr)`` patterns (stderr None: with stdout); a one-task array
    (``single``) has its ``%A``/``%a`` replaced, since it runs as a plain job."""
    default_out = "slurm-%A_%a.out" if req.array is not None else "slurm-%j.out"
    stdout = _resolve(workdir, req.output or default_out)
    stderr = _resolve(workdir, req.error) if req.error else None
    if single is not None:
        stdout = _single_task_paths(stdout, single)
        stderr = None if stderr is None else _single_task_paths(stderr, single)
    return stdout, stderr


def _array_environment(array: ArraySpec | None, single: int | None) -> dict[str, str]:
    """What an array job's environment carries for the head: a one-task array's
    ``SLURM_ARRAY_TASK_*`` set here, sparse task ids as :data:`ARRAY_IDS_VAR`."""
    if single is not None:
        env = {f"SLURM_ARRAY_TASK_{k}": str(single) for k in ("ID", "MIN", "MAX")}
        env["SLURM_ARRAY_TASK_COUNT"] = "1"
        return env
    if array is not None and not array.dense:
        return {ARRAY_IDS_VAR: format_ids(array.ids)}
    return {}


def _add_dependencies(
    sub: JSON, mnp: JSON, deps: DependencySpec, array_task_ids: Mapping[str, Sequence[int]]
) -> None:
    """``dependsOn`` into ``sub``, ``dependencyMode``/``singleton`` into its ``mnp`` block;
    raises :class:`SbatchError` for a task the other job does not have."""
    depends_on, errors = _depends_on(deps, array_task_ids)
    if errors:
        raise SbatchError(errors)
    if depends_on:
        sub["dependsOn"] = depends_on
    if deps.mode == "ANY" and len(depends_on) > 1:
        mnp["dependencyMode"] = "ANY"
    if deps.singleton:
        mnp["singleton"] = True


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
