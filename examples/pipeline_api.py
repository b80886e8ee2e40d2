"""A small pipeline with the Python API: a job, an array after it, an MPI job after the array,
and a report that runs whatever became of the MPI job.

    mnp submit examples/pipeline_api.py --follow     # or: python examples/pipeline_api.py

``prepare`` writes ``config.json`` to a shared directory; each child of ``simulate`` reads it
and writes its result; ``allreduce`` (2 nodes, MPICH: see ``examples/mpi_job.py``) starts
once every child SUCCEEDED; ``report`` depends on ``simulate`` and on ``allreduce`` ending
either way (``After(…, "any")``), and prints the total. :func:`mnp.submit` orders the jobs
by their dependencies, so ``JOBS`` may list them in any order.

The shared directory is ``$MNP_SHARED/pipeline`` when ``MNP_SHARED`` is set, else a fresh one
under the temporary directory. The steps need only the standard library.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

CHILDREN = 4


def prepare() -> int:
    work = Path(os.environ["WORK"])
    (work / "config.json").write_text(json.dumps({"scale": 3}))
    print(f"wrote {work / 'config.json'}")
    return 0


def simulate() -> int:
    work = Path(os.environ["WORK"])
    index = int(os.environ["AWS_BATCH_JOB_ARRAY_INDEX"])
    value = json.loads((work / "config.json").read_text())["scale"] * (index + 1)
    (work / f"sim-{index}.txt").write_text(str(value))
    print(f"simulation {index}: {value}")
    return 0


def report() -> int:
    work = Path(os.environ["WORK"])
    total = sum(int((work / f"sim-{i}.txt").read_text()) for i in range(CHILDREN))
    print(f"total of {CHILDREN} simulations = {total}")
    return 0


STEPS = {"prepare": prepare, "simulate": simulate, "report": report}

if __name__ == "__main__" and sys.argv[1:] and sys.argv[1] in STEPS:
    sys.exit(STEPS[sys.argv[1]]())  # a step, run as a job: the standard library only

from mnp import After, ArrayJob, Job, MpiJob, submit  # noqa: E402 - steps run without mnp

SHARED = os.environ.get("MNP_SHARED")
WORK = Path(SHARED, "pipeline") if SHARED else Path(tempfile.mkdtemp(prefix="mnp-pipeline-"))
WORK.mkdir(parents=True, exist_ok=True)
ENV = {"WORK": str(WORK)}
THIS = str(Path(__file__).resolve())
HERE = Path(THIS).parent

prep = Job("prepare", [sys.executable, THIS, "prepare"], environment=ENV)
sim = ArrayJob(
    "simulate", [sys.executable, THIS, "simulate"], size=CHILDREN, environment=ENV,
    depends_on=[prep],
)  # fmt: skip
mpi = MpiJob(
    "allreduce", [sys.executable, str(HERE / "mpi_allreduce.py")], nodes=2, tasks_per_node=2,
    mpi="mpich", depends_on=[sim], timeout=300,
)  # fmt: skip
rep = Job(
    "report", [sys.executable, THIS, "report"], environment=ENV,
    depends_on=[sim, After(mpi, "any")],
)  # fmt: skip
JOBS = [rep, mpi, sim, prep]

if __name__ == "__main__":
    print(f"shared directory: {WORK}")
    submit(JOBS).wait()
