"""sbatch's options, typed: the script's directives and the command line (which wins, per
option) read into one :class:`SbatchRequest`, every bad value and contradiction reported at
once (:class:`mnp.slurm.script.SbatchError`, each naming the option, where it was given and the
rule). Pure; no I/O. What the request becomes: :mod:`mnp.slurm.sbatch`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mnp.client.jobspec import DEFAULT_QUEUE
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
from mnp.spec.noderanges import MPI_CHOICES

JSON = dict[str, Any]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
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


def request_from(
    script_text: str, command_line: Parsed, environ: Mapping[str, str]
) -> tuple[SbatchRequest, list[str]]:
    """The request the script's directives, sbatch's input environment variables
    (:data:`mnp.slurm.options.INPUT_ENVIRONMENT`) and the command line make, each overriding the
    one before per option, and the warnings to show. Raises :class:`SbatchError`
    listing every bad value and contradiction (``environ`` resolves ``--export=VAR``)."""
    script = read_script_settings(parse_script(script_text))
    env = environment_settings(environ, (*SBATCH_OPTIONS, *MNP_OPTIONS))
    last: dict[str, Setting] = {}
    for s in [*script.settings, *env.settings, *command_line.settings]:
        last[s.key] = s
    warnings = [*script.warnings, *env.warnings, *command_line.warnings]
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
    if req.every_node:
        errors.append(FieldError(where("every_node"), EVERY_NODE_UNSUPPORTED))
    if req.array is not None and len(req.array.ids) > 1 and req.multinode:
        errors.append(FieldError(where("array"), "multi-node jobs cannot be arrays (as in AWS "
                                 "Batch): one node per task, or a job per task"))  # fmt: skip
    deps = req.dependency
    if deps and req.array is None and any(d.kind == "aftercorr" for d in deps.items):
        errors.append(FieldError(where("dependency"), "aftercorr needs this job to be an array"))
    return errors
