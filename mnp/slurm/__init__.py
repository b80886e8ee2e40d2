"""Slurm habits on mnp: hostlists, squeue/scancel/sacct views, sbatch."""
