"""sbatch's options, typed: the script's directives and the command line (which wins, per
option) read into one :class:`SbatchRequest`, every bad value and contradiction reported at
once (:class:`mnp.slurm.script.SbatchError`, each naming the option, where it was given and the
rule). Pure; no I/O. What the request becomes: :mod:`mnp.slurm.sbatch`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
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
    parse_node_range,
    parse_time_limit,
    translate_output,
)
from mnp.spec import DEFAULT_QUEUE, NAME_PATTERN
from mnp.spec.noderanges import MPI_CHOICES

JSON = dict[str, Any]
NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = "1-128 letters, digits, hyphens and underscores, starting with a letter or digit"
ARRAY_CLIENT_MAX = 1_000_000
"""The most task ids ``mnp sbatch`` expands; the head refuses arrays over its own maximum
(``HeadConfig.max_array_size``, 10,000 unless raised) naming it."""
NOT_AVAILABLE = "Requested node configuration is not available"
"""Slurm's words for a job no node of the partition can ever run."""
INVALID_PARTITION = "Invalid partition name specified"
EVERY_NODE_UNSUPPORTED = (
    "not supported for batch scripts: the head runs a script on the main node only (use "
    "`mnp run --every-node`, or start per-node work from the script through the job's hostfile)"
)


@dataclass(frozen=True, slots=True)
class SbatchRequest:
    """What the options asked for, typed and checked (the mapping: :mod:`mnp.slurm.sbatch`)."""

    job_name: str | None = None
    """As given (any text: :func:`aws_job_name` is what the AWS view shows)."""
    nodes: int = 1
    nodes_given: bool = False
    """``-N`` was given; otherwise :func:`placed` may spread ``-n`` over more nodes."""
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
    signal: str | None = None
    """``--signal`` as given (checked): srun delivers it before the time limit."""
    requeue: bool | None = None
    hold: bool = False
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


def aws_job_name(name: str) -> str:
    """A Slurm job name as an AWS ``jobName``: every character outside letters, digits, ``-``
    and ``_`` becomes ``_``, leading ``_``/``-`` are dropped, at most 128 characters,
    ``sbatch`` when nothing is left (``run.v2`` → ``run_v2``, ``été`` → ``t_``)."""
    if NAME_RE.fullmatch(name):
        return name
    return re.sub(r"[^A-Za-z0-9_-]", "_", name).lstrip("_-")[:128] or "sbatch"


def parse_nodes_min(text: str) -> tuple[int, bool]:
    """``-N``: ``N`` or ``MIN-MAX`` → ``(nodes, ranged)``; a range takes its minimum, the
    count Slurm guarantees (mnp allocates exactly that many)."""
    first, last = parse_node_range(text)
    return first, last != first


_SIGNAL = re.compile(r"(?:[BR]:){0,2}(?:SIG)?(?:[A-Z][A-Z0-9]*|\d{1,2})(?:@\d{1,6})?")


def parse_signal(text: str) -> str:
    """``--signal=[B:][R:]SIG[@TIME]`` as Slurm writes it (``USR2@90``, ``SIGTERM``, ``10@30``),
    checked; srun reads it back from ``SLURM_SIGNAL`` (:mod:`launcher.srun`)."""
    value = text.strip()
    if not _SIGNAL.fullmatch(value):
        raise ValueError(f"{text!r} is not [B:][R:]SIG[@TIME] (e.g. USR2@90)")
    return value


def parse_array_any(text: str) -> ArraySpec:
    """Slurm's ``--array`` of up to :data:`ARRAY_CLIENT_MAX` tasks: the head, not the client,
    holds the site's maximum (``MNP_MAX_ARRAY_SIZE``)."""
    return parse_array(text, ARRAY_CLIENT_MAX)


def _flag(s: Setting) -> bool:
    return s.value == "yes"


_CONVERTERS: Mapping[str, Any] = {
    "nodes": parse_nodes_min, "ntasks": parse_count, "ntasks_per_node": parse_count,
    "cpus_per_task": parse_count, "mem": parse_memory, "mem_per_cpu": parse_memory,
    "gpus": parse_gpus, "gpus_per_node": parse_gpus, "gres": parse_gres,
    "time": parse_time_limit, "array": parse_array_any, "dependency": parse_dependency,
    "output": translate_output, "error": translate_output, "signal": parse_signal,
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
    """Nodes (a range takes its minimum), tasks, the plain values and the flags."""
    values, fields = r.values, r.fields
    if "nodes" in values:
        fields["nodes"], ranged = values["nodes"]
        fields["nodes_given"] = True
        if ranged:
            r.warnings.append(f"{r.where('nodes')}: mnp allocates exactly {fields['nodes']} nodes")
    elif "ntasks" in values and "ntasks_per_node" in values:
        fields["nodes"] = math.ceil(values["ntasks"] / values["ntasks_per_node"])
    for key in ("ntasks", "ntasks_per_node", "cpus_per_task", "array", "dependency",
                "output", "error", "wrap", "chdir", "signal"):  # fmt: skip
        if key in values:
            fields[key] = values[key]
    if "time" in values:
        fields["time_seconds"] = values["time"]
    for key in ("requeue", "hold", "parsable", "quiet", "dry_run", "wait", "every_node"):
        if key in r.last:
            fields[key] = _flag(r.last[key])


def _read_names(r: _Reading) -> None:
    """The job name, the partition and ``--mpi``, each checked."""
    values, fields, errors, where = r.values, r.fields, r.errors, r.where
    if "job_name" in values:
        fields["job_name"] = values["job_name"]  # any text, as Slurm takes it (aws_job_name)
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


# -- the partition: its nodes' size, known at submit -------------------------------------------


@dataclass(frozen=True, slots=True)
class Partition:
    """What a job queue's compute environments offer one job, as far as the head says: the
    largest node and the most nodes at once. ``None`` where it cannot be known at submit (an
    environment of SSH hosts or EC2 instances: nodes of many sizes, or none yet)."""

    name: str
    vcpus: int | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    max_nodes: int | None = None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def partition_from(queue: JSON, environments: list[JSON]) -> Partition:
    """The :class:`Partition` of one JobQueueDetail, from the ComputeEnvironmentDetails of
    its ``computeEnvironmentOrder``. Only MANAGED environments of local nodes have one node
    size (``mnp.vcpus``/``memoryMiB``/``gpus``) and a known most: ``mnp.nodes`` when fixed,
    ``computeResources.maxvCpus`` ÷ vCPUs when elastic; any other makes every figure
    unknown (never a false refusal)."""
    name = str(queue.get("jobQueueName", ""))
    by_name = {str(ce.get("computeEnvironmentName")): ce for ce in environments}
    by_arn = {str(ce.get("computeEnvironmentArn")): ce for ce in environments}
    sizes: list[tuple[int, int, int, int]] = []
    for order in queue.get("computeEnvironmentOrder") or []:
        ref = str(order.get("computeEnvironment", ""))
        ce = by_name.get(ref) or by_arn.get(ref) or by_name.get(ref.rpartition("/")[2])
        m = (ce or {}).get("mnp") or {}
        if ce is None or ce.get("type") != "MANAGED" or m.get("provider") != "local":
            return Partition(name)
        vcpus, mem, gpus = _int(m.get("vcpus")), _int(m.get("memoryMiB")), _int(m.get("gpus"))
        if vcpus is None or mem is None:
            return Partition(name)
        most = _int((ce.get("computeResources") or {}).get("maxvCpus"))
        nodes = most // vcpus if most is not None else _int(m.get("nodes"))
        sizes.append((vcpus, mem, gpus or 0, nodes or 0))
    if not sizes:
        return Partition(name)
    most_nodes = max(s[3] for s in sizes) or None  # none yet: it may grow
    return Partition(name, max(s[0] for s in sizes), max(s[1] for s in sizes),
                     max(s[2] for s in sizes), most_nodes)  # fmt: skip


def placed(req: SbatchRequest, part: Partition) -> SbatchRequest:
    """``req`` with its node count derived as Slurm derives it when ``-N`` is absent: as
    many of the partition's nodes as ``-n`` tasks of ``-c`` vCPUs need (``-n 40`` on 16-vCPU
    nodes → 3 nodes). Unchanged when ``-N`` or ``--ntasks-per-node`` was given, or the
    node size is unknown."""
    if req.nodes_given or req.ntasks_per_node or not req.ntasks or part.vcpus is None:
        return req
    per_node = max(1, part.vcpus // (req.cpus_per_task or 1))
    nodes = math.ceil(req.ntasks / per_node)
    return req if nodes <= 1 else replace(req, nodes=nodes)  # too many: fit_problems says


def fit_problems(req: SbatchRequest, part: Partition) -> list[str]:
    """Why no node set of the partition can ever run ``req`` (empty when it may), each naming
    the limit: the job then never starts, so sbatch refuses it at submit (:data:`NOT_AVAILABLE`)."""
    out: list[str] = []
    where = f"partition {part.name}"
    if part.vcpus is not None and req.vcpus_per_node > part.vcpus:
        shape = f"{req.tasks_per_node} tasks × {req.cpus_per_task or 1} CPUs"
        out.append(f"{req.vcpus_per_node} CPUs per node ({shape}), but {where}'s nodes have "
                   f"{part.vcpus}")  # fmt: skip
    mem = req.mem_mib or (req.mem_per_cpu_mib or 0) * req.vcpus_per_node
    if part.memory_mib is not None and mem > part.memory_mib:
        out.append(f"{mem} MiB of memory per node, but {where}'s nodes have {part.memory_mib} MiB")
    gpus = req.gpus_per_node or (math.ceil(req.gpus / req.nodes) if req.gpus else 0)
    if part.gpus is not None and gpus > part.gpus:
        out.append(f"{gpus} GPUs per node, but {where}'s nodes have {part.gpus}")
    if part.max_nodes is not None and req.nodes > part.max_nodes:
        out.append(f"{req.nodes} nodes, but {where} has at most {part.max_nodes}")
    return out
