"""Pure builders: MPI argv and hostfiles, SSH wiring, the job environment, container runs,
output paths. No I/O beyond what a docstring names; the node side (launcher) may import these."""
