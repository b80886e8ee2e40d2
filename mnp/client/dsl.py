"""The Python API: jobs written as small frozen dataclasses, submitted as one pipeline.

::

    from mnp import ArrayJob, Job, submit

    prep = Job("prep", ["python3", "/abs/prep.py"])
    sweep = ArrayJob("sweep", ["python3", "/abs/step.py"], size=8, depends_on=[prep])
    run = submit([prep, sweep])          # registers, submits in dependency order
    run.wait()                           # streams every job's output; raises JobFailed

A spec (:class:`Job`, :class:`ArrayJob`, :class:`MpiJob`) checks itself when constructed and
raises :class:`mnp.errors.InvalidInput` listing every problem (``ArrayJob.size: …``). It turns
into the two requests the head takes by pure functions: :func:`build_definition`
(RegisterJobDefinition, named after the job) and :func:`build_submission` (SubmitJob, with
dependencies resolved through a name → job id mapping). :func:`mnp.client.plan.plan` orders a set
of specs so that every job comes after what it depends on; submitting and waiting live in
:mod:`mnp.client.run`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from mnp.errors import FieldError, InvalidInput
from mnp.spec import DEFAULT_QUEUE, ENV_NAME_PATTERN, NAME_PATTERN
from mnp.spec.noderanges import MPI_CHOICES

JSON = dict[str, Any]
PathLike = str | os.PathLike[str]

NAME_RE = re.compile(NAME_PATTERN)
"""Job and job-definition names, as the head checks them (``mnp.service.models.NAME_RE``)."""
ENV_NAME = re.compile(ENV_NAME_PATTERN)
MAX_DEPENDENCIES = 20
MAX_ARRAY = 10_000
MAX_NODES = 1000
MAX_ATTEMPTS = 10

Condition = Literal["ok", "any", "notok", "start", "n_to_n"]
CONDITION_TYPES: dict[str, str | None] = {
    "ok": None,  # AFTER_OK is the head's default: leaving it out keeps the request AWS-shaped
    "any": "AFTER_ANY",
    "notok": "AFTER_NOT_OK",
    "start": "AFTER_START",
    "n_to_n": "N_TO_N",
}


@dataclass(frozen=True)
class After:
    """A dependency with a condition: the job starts once ``job`` has …

    - ``"ok"`` (default): SUCCEEDED (if it FAILED, the dependent job fails too);
    - ``"any"``: ended, either way; ``"notok"``: FAILED; ``"start"``: started running;
    - ``"n_to_n"``: (arrays of one size) child *i* waits for child *i* of ``job``.

    ``job`` is a spec or the name of a spec submitted together with this one. ``index``
    narrows the dependency to one child of an array job.
    """

    job: Job | str
    condition: Condition = "ok"
    index: int | None = None

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if not isinstance(self.job, Job | str) or self.job == "":
            errors.append(FieldError("After.job", "must be a Job, ArrayJob, MpiJob or a job name"))
        if self.condition not in CONDITION_TYPES:
            errors.append(
                FieldError("After.condition", f"must be one of {', '.join(CONDITION_TYPES)}")
            )
        if self.index is not None:
            if not _is_int(self.index) or self.index < 0:
                errors.append(FieldError("After.index", "must be an array index (≥ 0)"))
            elif self.condition == "n_to_n":
                errors.append(FieldError("After.index", "an n_to_n dependency takes no index"))
        if errors:
            raise InvalidInput(errors)

    @property
    def name(self) -> str:
        """The name of the job depended on."""
        return self.job if isinstance(self.job, str) else self.job.name


def NToN(array: ArrayJob | str) -> After:
    """Child *i* of the dependent array waits for child *i* of ``array``: AWS's N_TO_N
    dependency (hence the name, shaped like the class it returns)."""
    return After(array, "n_to_n")


@dataclass(frozen=True)
class Job:
    """One job: ``command`` (an argv list; no shell) runs on one node.

    ``vcpus``/``memory_mib``/``gpus`` are what it needs of a node; ``environment`` is added
    to the job's own (AWS_BATCH_* and the like); ``timeout`` is seconds per attempt;
    ``attempts`` (1-10) how often it runs before it counts as FAILED. ``depends_on`` lists
    specs, names of specs submitted together, or :class:`After` conditions. ``working_dir``
    (absolute path on the node; default: a fresh directory per attempt) and ``output``
    (absolute path the output is also written to; ``%j``/``%a``/``%x``… patterns as in
    ``docs/native-api.md``) are mnp's additions; ``image`` runs it in that container image.

    Raises :class:`InvalidInput` naming every bad field.
    """

    name: str
    command: Sequence[PathLike]
    _: KW_ONLY
    vcpus: int = 1
    memory_mib: int | None = None
    gpus: int = 0
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: int | None = None
    attempts: int = 1
    queue: str = DEFAULT_QUEUE
    depends_on: Sequence[Dependency] = ()
    working_dir: PathLike | None = None
    output: PathLike | None = None
    image: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze what the caller may still hold and mutate; paths become strings.
        object.__setattr__(self, "command", _seq(self.command, _fspath))
        object.__setattr__(self, "depends_on", _seq(self.depends_on))
        for key in ("environment", "tags"):
            value = getattr(self, key)
            object.__setattr__(self, key, dict(value) if isinstance(value, Mapping) else value)
        errors = self.problems()
        if errors:
            raise InvalidInput(errors)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def problems(self) -> list[FieldError]:
        """Every problem with this spec's own fields (dependencies are checked by :func:`plan`)."""
        k = self.kind
        errors: list[FieldError] = []

        def bad(name: str, message: str) -> None:
            errors.append(FieldError(f"{k}.{name}", message))

        if not isinstance(self.name, str) or not NAME_RE.fullmatch(self.name):
            bad("name", f"{self.name!r}: 1-128 letters, digits, - and _, starting alphanumeric")
        if not isinstance(self.command, tuple) or not all(isinstance(a, str) for a in self.command):
            bad("command", "must be a list of strings (an argv; no shell)")
        elif not self.command:
            bad("command", "must not be empty")
        if not _is_int(self.vcpus) or self.vcpus < 1:
            bad("vcpus", f"must be an integer ≥ 1, got {self.vcpus!r}")
        if self.memory_mib is not None and (not _is_int(self.memory_mib) or self.memory_mib < 4):
            bad("memory_mib", f"must be an integer ≥ 4 (MiB), got {self.memory_mib!r}")
        if not _is_int(self.gpus) or self.gpus < 0:
            bad("gpus", f"must be an integer ≥ 0, got {self.gpus!r}")
        if not isinstance(self.environment, dict):
            bad("environment", "must be a mapping of variable names to strings")
        else:
            for name, value in self.environment.items():
                if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
                    bad(f"environment[{name!r}]", "not a valid variable name")
                elif not isinstance(value, str):
                    bad(f"environment[{name!r}]", f"must be a string, got {type(value).__name__}")
        if self.timeout is not None and (not _is_int(self.timeout) or self.timeout < 1):
            bad("timeout", f"must be whole seconds ≥ 1, got {self.timeout!r}")
        if not _is_int(self.attempts) or not 1 <= self.attempts <= MAX_ATTEMPTS:
            bad("attempts", f"must be 1..{MAX_ATTEMPTS}, got {self.attempts!r}")
        if not isinstance(self.queue, str) or not self.queue:
            bad("queue", "must be a non-empty string")
        deps = self.depends_on if isinstance(self.depends_on, tuple) else ()
        if not isinstance(self.depends_on, tuple):
            bad("depends_on", "must be a list (of jobs, names or After conditions)")
        elif len(deps) > MAX_DEPENDENCIES:
            bad("depends_on", f"at most {MAX_DEPENDENCIES} dependencies")
        for i, dep in enumerate(deps):
            if not isinstance(dep, Job | After) and not (isinstance(dep, str) and dep):
                bad(f"depends_on[{i}]", "must be a Job, ArrayJob, MpiJob, After or a job name")
        for key in ("working_dir", "output"):
            value = getattr(self, key)
            if value is not None and not os.path.isabs(_fspath(value)):
                bad(key, f"must be an absolute path (jobs run elsewhere), got {value!r}")
        if self.image is not None and (not isinstance(self.image, str) or not self.image):
            bad("image", "must be a non-empty string")
        if not isinstance(self.tags, dict) or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in self.tags.items()
        ):
            bad("tags", "must be a mapping of strings to strings")
        return errors


Dependency = Job | str | After
"""What ``depends_on`` lists: a spec, the name of a spec submitted with it, or a condition."""


@dataclass(frozen=True)
class ArrayJob(Job):
    """``size`` (2-10000) copies of the job; each child reads its index from
    ``AWS_BATCH_JOB_ARRAY_INDEX``. ``max_running`` caps children running at once;
    ``sequential`` runs them one after another (AWS's SEQUENTIAL)."""

    _: KW_ONLY
    size: int
    max_running: int | None = None
    sequential: bool = False

    def problems(self) -> list[FieldError]:
        errors = super().problems()
        if not _is_int(self.size) or not 2 <= self.size <= MAX_ARRAY:
            errors.append(FieldError("ArrayJob.size", f"must be 2..{MAX_ARRAY}, got {self.size!r}"))
        if self.max_running is not None and (not _is_int(self.max_running) or self.max_running < 1):
            errors.append(
                FieldError("ArrayJob.max_running", f"must be ≥ 1, got {self.max_running!r}")
            )
        if not isinstance(self.sequential, bool):
            errors.append(FieldError("ArrayJob.sequential", "must be True or False"))
        return errors


@dataclass(frozen=True)
class MpiJob(Job):
    """A multi-node parallel job on ``nodes`` nodes brought up together.

    By default node 0 runs ``command`` under ``mpiexec`` (``mpi``: auto, mpich, openmpi,
    intelmpi; ``none`` runs it as given) with ``tasks_per_node`` ranks on each node (default:
    the node's vCPUs); the other nodes serve SSH for it. With ``every_node`` each node runs
    the command itself (torchrun style: MASTER_ADDR, NODE_RANK… are set), without mpiexec.
    ``vcpus``/``memory_mib``/``gpus`` are per node.
    """

    _: KW_ONLY
    nodes: int
    tasks_per_node: int | None = None
    mpi: str = "auto"
    every_node: bool = False

    def problems(self) -> list[FieldError]:
        errors = super().problems()
        if not _is_int(self.nodes) or not 1 <= self.nodes <= MAX_NODES:
            errors.append(FieldError("MpiJob.nodes", f"must be 1..{MAX_NODES}, got {self.nodes!r}"))
        if self.tasks_per_node is not None and (
            not _is_int(self.tasks_per_node) or not 1 <= self.tasks_per_node <= 1024
        ):
            errors.append(
                FieldError("MpiJob.tasks_per_node", f"must be 1..1024, got {self.tasks_per_node!r}")
            )
        if self.mpi not in MPI_CHOICES:
            errors.append(FieldError("MpiJob.mpi", f"must be one of {', '.join(MPI_CHOICES)}"))
        elif self.every_node and self.mpi not in ("auto", "none"):
            errors.append(
                FieldError("MpiJob.mpi", "every_node runs the command on each node, not mpiexec")
            )
        return errors


# -- pure builders -------------------------------------------------------------------------------


def build_definition(job: Job) -> JSON:
    """The RegisterJobDefinition request for ``job``: named after it, holding what a job
    definition holds (command, resources, environment, image, retries, timeout)."""
    defn: JSON = {"jobDefinitionName": job.name}
    if isinstance(job, MpiJob):
        if job.every_node:
            ranges = [{"targetNodes": "0:", "container": _container(job, command=True)}]
        else:
            ranges = [{"targetNodes": "0", "container": _container(job, command=True)}]
            if job.nodes > 1:
                ranges.append({"targetNodes": "1:", "container": _container(job, command=False)})
        settings: JSON = {"mpi": "none" if job.every_node else job.mpi}
        if job.tasks_per_node is not None:
            settings["tasksPerNode"] = job.tasks_per_node
        defn["type"] = "multinode"
        defn["nodeProperties"] = {
            "numNodes": job.nodes, "mainNode": 0, "nodeRangeProperties": ranges, "mnp": settings,
        }  # fmt: skip
    else:
        defn["type"] = "container"
        defn["containerProperties"] = _container(job, command=True)
    if job.attempts > 1:
        defn["retryStrategy"] = {"attempts": job.attempts}
    if job.timeout is not None:
        defn["timeout"] = {"attemptDurationSeconds": job.timeout}
    return defn


def build_submission(
    job: Job, definition: str, ids: Mapping[str, str], queue: str | None = None
) -> JSON:
    """The SubmitJob request for ``job``: ``definition`` is ``name`` or ``name:revision``;
    ``ids`` maps the name of every job it depends on to that job's id (KeyError otherwise);
    ``queue`` overrides the spec's."""
    body: JSON = {"jobName": job.name, "jobQueue": queue or job.queue, "jobDefinition": definition}
    extras: JSON = {}
    if isinstance(job, ArrayJob):
        body["arrayProperties"] = {"size": job.size}
        if job.max_running is not None:
            extras["arrayMaxRunning"] = job.max_running
    deps: list[JSON] = []
    for dep in job.depends_on:
        after = dep if isinstance(dep, After) else After(dep)
        job_id = ids[after.name]
        entry: JSON = {"jobId": job_id if after.index is None else f"{job_id}:{after.index}"}
        kind = CONDITION_TYPES[after.condition]
        if kind is not None:
            entry["type"] = kind
        deps.append(entry)
    if isinstance(job, ArrayJob) and job.sequential:
        deps.append({"type": "SEQUENTIAL"})
    if deps:
        body["dependsOn"] = deps
    if job.tags:
        body["tags"] = dict(job.tags)
    if job.working_dir is not None:
        extras["workingDirectory"] = _fspath(job.working_dir)
    if job.output is not None:
        extras["stdout"] = _fspath(job.output)
    if extras:
        body["mnp"] = extras
    return body


def _container(job: Job, command: bool) -> JSON:
    out: JSON = {}
    if job.image is not None:
        out["image"] = job.image
    if command:
        out["command"] = [_fspath(a) for a in job.command]
    resources = [{"type": "VCPU", "value": str(job.vcpus)}]
    if job.memory_mib is not None:
        resources.append({"type": "MEMORY", "value": str(job.memory_mib)})
    if job.gpus:
        resources.append({"type": "GPU", "value": str(job.gpus)})
    out["resourceRequirements"] = resources
    if job.environment:
        out["environment"] = [{"name": k, "value": v} for k, v in job.environment.items()]
    return out


# -- small helpers -------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fspath(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _seq(value: Any, each: Callable[[Any], Any] = lambda v: v) -> Any:
    """A list or tuple as a tuple (``each`` applied); anything else (a lone string included)
    as it is, for :meth:`Job.problems` to refuse."""
    return tuple(each(v) for v in value) if isinstance(value, list | tuple) else value
