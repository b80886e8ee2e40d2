#!/bin/bash
# A one-node job: the #SBATCH lines below are read; this comment and blank lines do not end them.

#SBATCH --job-name=hello
#SBATCH -c 2 --mem=500M
#SBATCH --time=30
#SBATCH --output=hello-%j.out
#SBATCH --partition default
echo "hello from $SLURM_JOB_ID with $*"
#SBATCH --job-name=too-late
