"""The environment every job attempt sees — one contract for every provider.

Pure: built from the job, the attempt and the node; no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from mnp.errors import FieldError
from mnp.slurm.taskids import expand_ids
from mnp.spec.arns import REGION as LOCAL_REGION
from mnp.spec.arns import region_setting
from mnp.spec.jobs import Attempt, Job

SLURM_GIVEN_NAME = "MNP_SLURM_JOB_NAME"
"""Where ``mnp sbatch`` keeps a job name the AWS view had to map (``run.v2`` → ``run_v2``)."""

SLURM_TASK_IDS = "MNP_SLURM_ARRAY_TASK_IDS"
"""Set (in the job's environment) by ``mnp sbatch --array`` with Slurm's own task ids, e.g.
``1,3,5-9:2``: array index ``i`` is the ``i``-th of them (``SLURM_ARRAY_TASK_ID``, ``%a``)."""


CE_ENV_TAG = "mnp:env:"
"""A compute environment's tag ``mnp:env:NAME`` = value sets ``NAME`` for every job that runs
there (an S3 endpoint, a proxy); the AWS API has no field for it. The job's own environment
wins over it."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
DEFAULT_REGION = "us-east-1"
"""The region jobs are told (``AWS_REGION``) when ``MNP_REGION`` names none."""


def ce_environment(tags: Mapping[str, object] | None) -> dict[str, str]:
    """The variables a compute environment's ``mnp:env:`` tags give its jobs (names that
    are no variable's, and AWS Batch's own ``AWS_BATCH_*``, are left out: refused at create)."""
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        name = key[len(CE_ENV_TAG) :] if key.startswith(CE_ENV_TAG) else ""
        if _ENV_NAME.fullmatch(name) and not name.startswith("AWS_BATCH_"):
            out[name] = str(value)
    return out


def env_tag_errors(tags: Mapping[str, object] | None, path: str = "tags") -> list[FieldError]:
    """What is wrong with a compute environment's ``mnp:env:`` tags, each naming the tag
    (empty: nothing)."""
    errors = []
    for key in tags or {}:
        if key.startswith(CE_ENV_TAG):
            name = key[len(CE_ENV_TAG) :]
            if not _ENV_NAME.fullmatch(name):
                why = f"{name!r} is not an environment variable name (a letter or _, then " \
                      "letters, digits or _)"  # fmt: skip
                errors.append(FieldError(f"{path}.{key}", why))
            elif name.startswith("AWS_BATCH_"):
                errors.append(FieldError(f"{path}.{key}", "AWS_BATCH_* variables are mnp's"))
    return errors


def job_region() -> str:
    """The region jobs are told: the head's (``MNP_REGION``: :func:`mnp.spec.arns.
    region_setting`), or :data:`DEFAULT_REGION` for its default ``local``, which no AWS
    client knows."""
    value = region_setting()
    return DEFAULT_REGION if value == LOCAL_REGION else value


def job_environment(
    job: Job, attempt: Attempt, inherited: Mapping[str, str] | None = None
) -> dict[str, str]:
    """AWS Batch's variables, the Slurm names ported scripts read, then the job's own, on top
    of what its compute environment gives every job (``inherited``: :func:`ce_environment`).
    ``AWS_REGION``/``AWS_DEFAULT_REGION`` name the head's region unless the job sets them.

    The job's environment cannot override ``AWS_BATCH_*`` names (they are refused at submit).
    Multi-node jobs get their node's variables on top (``mnp.build.multinode.node_environment``) and
    then :func:`slurm_request_environment`. ``SLURM_JOBID``/``SLURM_NODELIST`` stay unset:
    Open MPI and MPICH take them for a real Slurm allocation and ask Slurm for it.

    ``SLURM_JOB_ID`` is the job's number (:func:`slurm_job_id`); ``SLURM_ARRAY_JOB_ID`` the
    array's number; the ``AWS_BATCH_*`` ids stay the UUIDs.
    """
    spec = job.spec
    env: dict[str, str] = {**(inherited or {}), **job.container.environment}
    region = job_region()
    env.setdefault("AWS_REGION", region)
    env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    own_id = slurm_job_id(job)
    env.update(
        {
            "AWS_BATCH_JOB_ID": job.job_id,
            "AWS_BATCH_JOB_ATTEMPT": str(attempt.number),
            "AWS_BATCH_JQ_NAME": spec.queue,
            "AWS_BATCH_CE_NAME": attempt.compute_environment,
            "MNP_NODE_ID": attempt.node_id,
            "MNP_NODE_ADDRESS": attempt.address,
            "MNP_LOG_STREAM": attempt.log_stream_name,
            "SLURM_JOB_ID": own_id,
            # the name as sbatch was given it (the AWS view's is mapped: mnp.slurm.sbatch)
            "SLURM_JOB_NAME": env.get(SLURM_GIVEN_NAME) or spec.name,
            "SLURM_JOB_PARTITION": spec.queue,
            "SLURM_NNODES": "1",
            "SLURM_JOB_NUM_NODES": "1",
            "SLURM_NTASKS": "1",
            "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_NODEID": "0",
            "SLURM_JOB_NODELIST": attempt.node_id,
            "SLURMD_NODENAME": attempt.node_id,
            "SLURM_RESTART_COUNT": str(attempt.number - 1),
        }
    )
    if job.array_index is not None and spec.array_size is not None and job.parent_id is not None:
        ids = task_ids(env.get(SLURM_TASK_IDS), spec.array_size)
        env.update(
            {
                "AWS_BATCH_JOB_ARRAY_INDEX": str(job.array_index),
                "AWS_BATCH_JOB_ARRAY_SIZE": str(spec.array_size),
                "SLURM_ARRAY_JOB_ID": str(spec.number) if spec.number is not None
                else job.parent_id,
                "SLURM_ARRAY_TASK_ID": str(ids[job.array_index] if ids else job.array_index),
                "SLURM_ARRAY_TASK_COUNT": str(spec.array_size),
                "SLURM_ARRAY_TASK_MIN": str(min(ids) if ids else 0),
                "SLURM_ARRAY_TASK_MAX": str(max(ids) if ids else spec.array_size - 1),
            }
        )
        if spec.extras.array_max_running is not None:
            env["SLURM_ARRAY_TASK_LIMIT"] = str(spec.extras.array_max_running)
    env.update(slurm_request_environment(job))
    return env


def slurm_job_id(job: Job) -> str:
    """Slurm's job id of ``job``: its number (an array task's own; a multi-node job's nodes
    share their job's), else, for a job stored before heads numbered jobs, its id (a node's:
    its whole job's)."""
    if job.number is not None:
        return str(job.number)
    return job.parent_id if job.node_index is not None and job.parent_id else job.job_id


def slurm_request_environment(job: Job) -> dict[str, str]:
    """What the job asked for in Slurm's terms (``mnp`` extras), which wins over the counts
    mnp derives: tasks, CPUs per task, submit directory, user."""
    x = job.spec.extras
    env: dict[str, str] = {}
    if x.ntasks is not None:
        env["SLURM_NTASKS"] = str(x.ntasks)
    if x.ntasks_per_node is not None:
        env["SLURM_NTASKS_PER_NODE"] = str(x.ntasks_per_node)
    if x.cpus_per_task is not None:
        env["SLURM_CPUS_PER_TASK"] = str(x.cpus_per_task)
    if x.submit_dir is not None:
        env["SLURM_SUBMIT_DIR"] = x.submit_dir
    if x.user is not None:
        env["SLURM_JOB_USER"] = x.user
    return env


def slurm_task_id(job: Job) -> int | None:
    """The Slurm task id of an array child (its index unless ``sbatch --array`` listed ids)."""
    if job.array_index is None or job.spec.array_size is None:
        return None
    ids = task_ids(job.container.environment.get(SLURM_TASK_IDS), job.spec.array_size)
    return ids[job.array_index] if ids else job.array_index


@functools.lru_cache(maxsize=32)
def task_ids(text: str | None, size: int) -> tuple[int, ...]:
    """``1,3,5-9:2`` → ``(1, 3, 5, 7, 9)`` (:func:`mnp.slurm.taskids.expand_ids`); empty when
    absent, unreadable or not exactly ``size`` ids (then the array index is the task id)."""
    if not text:
        return ()
    try:
        ids = expand_ids(text, max(size, 1))  # the head checked the size against its maximum
    except ValueError:
        return ()
    return tuple(ids) if len(ids) == size else ()
