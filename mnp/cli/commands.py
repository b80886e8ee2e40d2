"""Slurm's command names as real commands: ``mnp slurm install-commands DIR``, and ``salloc``.

Libraries that drive Slurm (submitit, dask-jobqueue) run ``sbatch``, ``squeue``, ``scancel``,
``sacct``, ``scontrol`` and ``sinfo`` from ``PATH``. A package's console scripts cannot be
optional, and ``sbatch`` on every ``pip install mnp`` would shadow a real Slurm, so instead
``mnp slurm install-commands ~/.local/bin`` writes one small ``/bin/sh`` script per command
into a directory the user chooses. Each runs this Python on this copy of mnp (its directory
first on ``sys.path``, so another installed mnp or the caller's working directory cannot
shadow it) with the verb in front of the arguments: ``sbatch -p q x.sh`` is
``mnp sbatch -p q x.sh``. The head is found as ``mnp`` finds it: ``MNP_URL``/``MNP_TOKEN``,
``MNP_HOME``, else ``~/.mnp``.

``srun`` is launcher.srun, the job-side srun: inside a batch job it starts the job's tasks
(the node agent puts the same command first on a batch script's ``PATH``); outside a job it
refuses, pointing to ``mnp run``. It is not ``mnp run``: srun's options (``-n``, ``--mpi``,
``-l``...) mean something else there, and a wrong answer is worse than a refusal.
``salloc`` refuses too: mnp has no interactive allocations.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from pathlib import Path

import click

import mnp

VERBS = ("sbatch", "squeue", "scancel", "sacct", "scontrol", "sinfo", "salloc")
"""The commands that are ``mnp <verb>``."""
COMMANDS = (*VERBS, "srun")
MARKER = "# written by `mnp slurm install-commands`"
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from {module} import main; sys.exit(main())"
)


def source_root() -> str:
    """The directory holding this ``mnp`` package (and ``launcher`` beside it)."""
    return str(Path(mnp.__file__).resolve().parent.parent)


def command_script(name: str, python: str | None = None, root: str | None = None) -> str:
    """The text of the installed ``name``: ``<python> -m mnp <name> "$@"`` for the verbs,
    ``<python> -m launcher.srun "$@"`` for ``srun``, with ``root`` first on ``sys.path``."""
    python = python or sys.executable
    root = root or source_root()
    if name == "srun":
        module, verb = "launcher.srun", ""
    elif name in VERBS:
        module, verb = "mnp.cli.main", f" {name}"
    else:
        raise ValueError(f"not a Slurm command mnp has: {name}")
    boot = _BOOT.format(module=module)
    return (
        f"#!/bin/sh\n{MARKER}\n"
        f'exec {shlex.quote(python)} -c {shlex.quote(boot)} {shlex.quote(root)}{verb} "$@"\n'
    )


def install_commands(directory: Path, force: bool = False) -> list[Path]:
    """Write every command of :data:`COMMANDS` into ``directory`` (made if missing), mode
    0755, and return their paths. A file of that name that this function did not write is
    left alone unless ``force`` (it may be a real Slurm's): FileExistsError names it, and
    nothing is written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / name for name in COMMANDS]
    if not force:
        for path in paths:
            if path.exists() or path.is_symlink():
                try:
                    ours = MARKER in path.read_text(errors="replace")
                except OSError:
                    ours = False
                if not ours:
                    raise FileExistsError(f"{path} exists and is not mnp's (--force replaces it)")
    for path, name in zip(paths, COMMANDS, strict=True):
        tmp = path.with_name(f".{name}.mnp-tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.write_text(command_script(name))
        tmp.chmod(0o755)
        os.replace(tmp, path)  # never write through a symlink left in its place
    return paths


@click.group("slurm")
def slurm_group() -> None:
    """Slurm's commands as real commands on PATH."""


@slurm_group.command("install-commands")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace files of those names that are not mnp's.")
def install_commands_command(directory: Path, force: bool) -> None:
    """Write sbatch, squeue, scancel, sacct, scontrol, sinfo, srun and salloc into
    DIRECTORY (e.g. ~/.local/bin): each is `mnp <name>` under this Python.

    srun runs a batch job's tasks (the job-side srun; outside a job it refuses and points
    to `mnp run`); salloc refuses (no interactive allocations). Batch jobs have these
    commands on their PATH already.
    """
    try:
        paths = install_commands(directory.expanduser(), force=force)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    on_path = str(directory.expanduser().resolve()) in (
        str(Path(p).resolve()) for p in os.environ.get("PATH", "").split(os.pathsep) if p
    )
    click.echo(f"wrote {', '.join(p.name for p in paths)} in {directory}")
    if not on_path:
        click.echo(f"note: {directory} is not on PATH", err=True)


@click.command(
    "salloc",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def salloc_command(argv: tuple[str, ...]) -> None:
    """Refuse, as mnp has no interactive allocations: `mnp run` or `mnp sbatch` instead."""
    click.echo(
        "salloc: error: mnp has no interactive allocations: run the command as a job with "
        "`mnp run [-N NODES] COMMAND` (it waits and prints its output), or submit a script "
        "with `mnp sbatch`",
        err=True,
    )
    raise click.exceptions.Exit(1)
