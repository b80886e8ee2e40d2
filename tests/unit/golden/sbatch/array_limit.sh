#!/bin/bash
#SBATCH --array=0-9%3
#SBATCH -o logs/%x_%A_%a.out
#SBATCH -e logs/%x_%A_%a.err
echo "task $SLURM_ARRAY_TASK_ID"
