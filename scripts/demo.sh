#!/usr/bin/env bash
# The README's main job: install mnp (with the MPICH wheel and mpi4py), then `mnp demo`:
# a head node with 4 local nodes runs a standard job, an array job, a job that depends on the
# array, and an MPI allreduce across several nodes; prints where each ran and how it ended.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec python3 -m mnp demo "$@"
