#!/bin/sh
#SBATCH --nodes=2-3 --ntasks=4 -c 2
#SBATCH -G a100:4
#SBATCH --exclusive
torchrun --nnodes "$SLURM_NNODES" train.py
