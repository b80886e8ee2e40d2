"""mnp's additions to SubmitJob (its ``mnp`` object): the output path patterns each attempt
expands (checked at submit by :func:`mnp.service.validation.check_extras`).

Pure: no I/O. The fields are documented in docs/native-api.md; the model is
:class:`mnp.spec.definitions.JobExtras`.
"""

from __future__ import annotations

import re
from typing import TypedDict

from mnp.build.environment import slurm_job_id, slurm_task_id
from mnp.spec.definitions import NO_EXTRAS
from mnp.spec.jobs import Attempt, Job

PATTERN = re.compile(r"%(.)", re.DOTALL)
SPECIFIERS = {
    "j": "the job id (an array child's own)",
    "A": "the array job id",
    "a": "the array index",
    "x": "the job name",
    "N": "the node id",
    "u": "the user",
    "%": "a literal %",
}


def expand_path(pattern: str, job: Job, attempt: Attempt) -> str:
    """``pattern`` with ``%j %A %a %x %N %u %%`` filled in for this attempt (see
    :data:`SPECIFIERS`); ``%A`` is the job id and ``%a`` empty outside arrays; a node of a
    multi-node job expands ``%j`` to the whole job's id.

    Ids are job numbers as Slurm writes them (:func:`~mnp.build.environment.slurm_job_id`):
    ``%j`` an array task's own number, ``%A`` its array's, so no ``:`` reaches a file name.
    (``%J``, Slurm's ``jobid.stepid``, is ``%j`` for a batch script: Slurm leaves the
    ``.batch`` step out of file names.)"""
    own_id = slurm_job_id(job)
    array_id = own_id
    if job.array_index is not None and job.parent_id:
        number = job.spec.number
        array_id = str(number) if number is not None else job.parent_id
    values = {
        "j": own_id,
        "A": array_id,
        "a": "" if job.array_index is None else str(slurm_task_id(job)),
        "x": job.spec.name,
        "N": attempt.node_id,
        "u": job.spec.extras.user or "",
        "%": "%",
    }
    return PATTERN.sub(lambda m: values.get(m.group(1), m.group(0)), pattern)


class AttemptFiles(TypedDict, total=False):
    """Keyword arguments of :class:`mnp.spec.protocol.Assignment`."""

    workdir: str | None
    stdout_path: str | None
    stderr_path: str | None
    script: str | None


def attempt_files(job: Job, attempt: Attempt, *, main: bool = True) -> AttemptFiles:
    """The Assignment fields the extras decide: ``workdir`` for every node; output paths
    (expanded) and the script only where the job's command runs (``main``)."""
    x = job.spec.extras
    if x is NO_EXTRAS:
        return {}
    out: AttemptFiles = {"workdir": x.workdir}
    if main:
        out["stdout_path"] = expand_path(x.stdout, job, attempt) if x.stdout else None
        out["stderr_path"] = expand_path(x.stderr, job, attempt) if x.stderr else None
        out["script"] = x.script
    return out


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


def safe_file_name(value: str) -> str:
    """``value`` (a job or attempt id: ids hold ``:``, ``#`` and ``/``) as one file name: every
    char outside ``[A-Za-z0-9._-]`` replaced by ``_``; never ``""``, ``"."`` or ``".."``, so the
    result is always one new path component. The head and its nodes name files with it."""
    safe = _UNSAFE_CHARS.sub("_", value)
    return safe if safe.strip(".") else "_" * max(1, len(safe))
