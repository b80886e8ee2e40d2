"""An MPI job on several nodes: ``examples/mpi_allreduce.py`` under mpiexec.

    mnp submit examples/mpi_job.py --follow          # or: python examples/mpi_job.py
    MPI_NODES=4 mnp submit examples/mpi_job.py --follow

The head brings ``MPI_NODES`` nodes (default 2) up together; node 0 runs the program under
MPICH's ``mpiexec`` with ``TASKS_PER_NODE`` ranks on each node, the other nodes serve SSH for
it (as ``mnp run -N 2 --ntasks-per-node 2 --mpi mpich`` does). Every rank prints
``rank=R size=S node=<address> ok=True`` and rank 0 ``allreduce ok on N nodes``.
Needs MPI: ``pip install -e '.[mpi]'`` (the MPICH wheel's mpiexec, mpi4py, numpy), used
through this interpreter so every rank runs the same one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mnp import MpiJob, submit

NODES = int(os.environ.get("MPI_NODES", "2"))
TASKS_PER_NODE = 2

JOBS = [
    MpiJob(
        "mpi-allreduce",
        [sys.executable, str(Path(__file__).resolve().parent / "mpi_allreduce.py")],
        nodes=NODES,
        tasks_per_node=TASKS_PER_NODE,
        mpi="mpich",
        timeout=300,
    )
]

if __name__ == "__main__":
    submit(JOBS).wait()
