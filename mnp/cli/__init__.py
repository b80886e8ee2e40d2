"""The ``mnp`` command and its Slurm-style commands (click lives here and nowhere else)."""
