"""sbatch's options, typed: the script's directives and the command line (which wins, per
option) read into one :class:`SbatchRequest`, every bad value and contradiction reported at
once (:class:`mnp.slurm.script.SbatchError`, each naming the option, where it was given and the
rule). Pure; no I/O. What the request becomes: :mod:`mnp.slurm.sbatch`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mnp.errors import FieldError
from mnp.slurm.options import (
    MNP_OPTIONS,
    SBATCH_OPTIONS,
    Parsed,
    Setting,
    environment_settings,
)
from mnp.slurm.script import SbatchError, parse_script, read_script_settings
from mnp.slurm.values import (
    ArraySpec,
    DependencySpec,
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
from mnp.spec import DEFAULT_QUEUE, NAME_PATTERN
from mnp.spec.noderanges import MPI_CHOICES

JSON = dict[str, Any]
NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = "1-128 letters, digits, hyphens and underscores, starting with a letter or digit"
EVERY_NODE_UNSUPPORTED = (
    "not supported for batch scripts: the head runs a script on the main node only (use "
    "`mnp run --every-node`, or start per-node work from the script through the job's hostfile)"
)


@dataclass(frozen=True, slots=True)
class SbatchRequest:
    """What the options asked for, typed and checked (the mapping: :mod:`mnp.slurm.sbatch`)."""

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
        return self.nodes > 1 or self.mpi is not None


def _flag(s: Setting) -> bool:
    return s.value == "yes"


_CONVERTERS: Mapping[str, Any] = {
    "nodes": parse_nodes, "ntasks": parse_count, "ntasks_per_node": parse_count,
    "cpus_per_task": parse_count, "mem": parse_memory, "mem_per_cpu": parse_memory,
    "gpus": parse_gpus, "gpus_per_node": parse_gpus, "gres": parse_gres,
    "time": parse_time_limit, "array": parse_array, "dependency": parse_dependency,
    "output": translate_output, "error": translate_output,
}  # fmt: skip


@dataclass
class _Reading:
    """One :func:`request_from` under way: the winning setting and converted value per option,
    the request's fields so far, and every error and warning found."""

    last: dict[str, Setting]
    values: dict[str, Any] = field(default_factory=dict)
    fields: JSON = field(default_factory=dict)
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def where(self, key: str) -> str:
        return self.last[key].where


def request_from(
    script_text: str, command_line: Parsed, environ: Mapping[str, str]
) -> tuple[SbatchRequest, list[str]]:
    """The request the script's directives, sbatch's input environment variables
    (:data:`mnp.slurm.options.INPUT_ENVIRONMENT`) and the command line make, each overriding the
    one before per option, and the warnings to show. Raises :class:`SbatchError`
    listing every bad value and contradiction (``environ`` resolves ``--export=VAR``)."""
    script = read_script_settings(parse_script(script_text))
    env = environment_settings(environ, (*SBATCH_OPTIONS, *MNP_OPTIONS))
    r = _Reading(last={})
    for s in [*script.settings, *env.settings, *command_line.settings]:
        r.last[s.key] = s
    r.warnings += [*script.warnings, *env.warnings, *command_line.warnings]
    for key, s in r.last.items():
        convert = _CONVERTERS.get(key)
        try:
            r.values[key] = convert(s.value) if convert else s.value
        except ValueError as exc:
            r.errors.append(FieldError(s.where, str(exc)))
    _read_shape(r)
    _read_names(r)
    _read_memory(r)
    _read_gpus(r)
    if "export" in r.values:
        try:
            parse_export_spec(r.values["export"], environ)
            r.fields["export"] = r.values["export"]
        except ValueError as exc:
            r.errors.append(FieldError(r.where("export"), str(exc)))
    req = SbatchRequest(**r.fields)
    errors = r.errors + _cross_checks(req, r.where)
    if errors:
        raise SbatchError(errors)
    return req, r.warnings


def _read_shape(r: _Reading) -> None:
    """Nodes (a range takes its maximum), tasks, the plain values and the flags."""
    values, fields = r.values, r.fields
    if "nodes" in values:
        fields["nodes"], ranged = values["nodes"]
        if ranged:
            r.warnings.append(f"{r.where('nodes')}: mnp allocates exactly {fields['nodes']} nodes")
    elif "ntasks" in values and "ntasks_per_node" in values:
        fields["nodes"] = math.ceil(values["ntasks"] / values["ntasks_per_node"])
    for key in ("ntasks", "ntasks_per_node", "cpus_per_task", "array", "dependency",
                "output", "error", "wrap", "chdir"):  # fmt: skip
        if key in values:
            fields[key] = values[key]
    if "time" in values:
        fields["time_seconds"] = values["time"]
    for key in ("requeue", "parsable", "quiet", "dry_run", "wait", "every_node"):
        if key in r.last:
            fields[key] = _flag(r.last[key])


def _read_names(r: _Reading) -> None:
    """The job name, the partition and ``--mpi``, each checked."""
    values, fields, errors, where = r.values, r.fields, r.errors, r.where
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


def _read_memory(r: _Reading) -> None:
    """``--mem`` or ``--mem-per-cpu`` (not both; 0 is warned about and sends nothing)."""
    values, where = r.values, r.where
    if "mem" in values and "mem_per_cpu" in values:
        also = where("mem_per_cpu")
        r.errors.append(FieldError(where("mem"), f"give --mem or --mem-per-cpu, not both ({also})"))
    elif values.get("mem") == 0 or values.get("mem_per_cpu") == 0:
        key = "mem" if "mem" in values else "mem_per_cpu"
        r.warnings.append(f"{where(key)}: 0 (all of a node's memory) is not supported by mnp; "
                          "no memory requirement sent")  # fmt: skip
    else:
        r.fields["mem_mib"] = values.get("mem")
        r.fields["mem_per_cpu_mib"] = values.get("mem_per_cpu")


def _read_gpus(r: _Reading) -> None:
    """One of ``-G``, ``--gpus-per-node`` and ``--gres=gpu``; GPU types and other resources
    are warned about and dropped."""
    values, where = r.values, r.where
    gpu_keys = [k for k in ("gpus", "gpus_per_node", "gres") if k in values]
    if len(gpu_keys) > 1:
        r.errors.append(FieldError(where(gpu_keys[1]), "give one of -G/--gpus, --gpus-per-node "
                                   f"and --gres=gpu (also {where(gpu_keys[0])})"))  # fmt: skip
    for key in ("gpus", "gpus_per_node"):
        if key in values:
            r.fields[key], kind = values[key]
            if kind:
                r.warnings.append(f"{where(key)}: GPU type {kind!r} ignored (mnp counts GPUs only)")
    if "gres" in values:
        r.fields["gpus_per_node"], others = values["gres"]
        if others:
            r.warnings.append(f"{where('gres')}: {', '.join(others)} ignored (mnp knows gpu only)")


def _cross_checks(req: SbatchRequest, where: Callable[[str], str]) -> list[FieldError]:
    errors: list[FieldError] = []
    if req.ntasks and req.ntasks > req.nodes * req.tasks_per_node:
        errors.append(FieldError(where("ntasks"), f"{req.ntasks} tasks do not fit {req.nodes} "
                                 f"nodes × {req.tasks_per_node} tasks per node"))  # fmt: skip
    if req.every_node:
        errors.append(FieldError(where("every_node"), EVERY_NODE_UNSUPPORTED))
    if req.array is not None and len(req.array.ids) > 1 and req.multinode:
        errors.append(FieldError(where("array"), "multi-node jobs cannot be arrays (as in AWS "
                                 "Batch): one node per task, or a job per task"))  # fmt: skip
    deps = req.dependency
    if deps and req.array is None and any(d.kind == "aftercorr" for d in deps.items):
        errors.append(FieldError(where("dependency"), "aftercorr needs this job to be an array"))
    return errors
