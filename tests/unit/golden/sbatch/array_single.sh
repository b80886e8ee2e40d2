#!/bin/bash
#SBATCH --array=17
#SBATCH --output=rerun-%A_%a.out
echo "task $SLURM_ARRAY_TASK_ID again"
