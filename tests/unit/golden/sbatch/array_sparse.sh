#!/bin/bash
#SBATCH -a 1-3,10-20:5,7%4
echo "task $SLURM_ARRAY_TASK_ID"
