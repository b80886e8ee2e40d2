#!/usr/bin/env bash
#SBATCH -J mpi-hello
#SBATCH -N 4
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=1G
#SBATCH -t 0:10:00
#SBATCH --requeue
#MNP --mpi none
set -euo pipefail
exec python -m launcher.wire -- python examples/mpi_allreduce.py
