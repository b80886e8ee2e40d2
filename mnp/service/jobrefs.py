"""Job ids as Slurm users write them: the head's integer job numbers beside the UUIDs.

Every top-level job gets a number at submission (:meth:`mnp.store.sqlite.Store.intake`);
an array of size S takes S + 1 numbers, so each task has an integer id of its own as in Slurm.
:func:`resolve_job_ref` turns what a client wrote into the id the head keys jobs by, so every
operation that takes a job id (DescribeJobs, CancelJob, TerminateJob, ``dependsOn``, ListJobs'
``arrayJobId``, the logs) accepts both:

- ``N``: the job numbered N, or the array task whose own number N is;
- ``N_T``: the task of array N with Slurm task id T (its index unless ``mnp sbatch --array``
  listed other ids);
- ``N:I`` / ``N#I``: child I / node I of job N, as AWS writes them with the UUID.

Anything else (a UUID form, a number no job has) comes back unchanged, so an unknown number is
answered exactly as an unknown UUID is.
"""

from __future__ import annotations

import re

from mnp.build.environment import SLURM_TASK_IDS, task_ids
from mnp.spec.definitions import JobSpec
from mnp.spec.jobs import array_child_id, node_job_id
from mnp.store.sqlite import Store

NUMBER_REF = re.compile(r"([0-9]{1,18})(?:([_:#])([0-9]{1,9}))?")
"""``N``, ``N_T``, ``N:I`` or ``N#I`` (at most 18 digits: SQLite's integers are 64-bit)."""


def resolve_job_ref(store: Store, ref: str) -> str:
    """The job id ``ref`` names (see the module docstring); ``ref`` itself when it is not a
    number form or no job has that number."""
    m = NUMBER_REF.fullmatch(ref)
    if m is None:
        return ref
    number = int(m[1])
    block = store.numbered_block(number)
    if block is None:
        return ref
    first, job_id = block
    spec = _spec(store, job_id)
    if spec is None:
        return ref
    size = spec.array_size
    if number != first:  # an array task's own number
        index = number - first - 1
        if m[2] is None and size is not None and index < size:
            return array_child_id(job_id, index)
        return ref
    if m[2] is None:
        return job_id
    sub = int(m[3])
    if m[2] == "#":
        nodes = spec.nodes
        return node_job_id(job_id, sub) if nodes is not None and sub < nodes.num_nodes else ref
    if size is None:
        return ref
    if m[2] == "_":
        ids = task_ids(spec.container.environment.get(SLURM_TASK_IDS), size)
        if ids:
            return array_child_id(job_id, ids.index(sub)) if sub in ids else ref
    return array_child_id(job_id, sub) if sub < size else ref


def _spec(store: Store, job_id: str) -> JobSpec | None:
    try:
        return store.spec(job_id)
    except KeyError:
        return None
