"""``srun`` inside an mnp batch script: start a command as the job's tasks.

The node agent puts an ``srun`` on the ``PATH`` of every attempt that runs a batch script
(``mnp sbatch``), so scripts written for Slurm keep their ``srun prog`` lines:

- in a multi-node job it becomes ``python -m launcher.wire --np N -- prog``: MPI over the
  job's nodes (hostfile, SSH and environment are already wired), ``N`` = ``-n``, else nodes ×
  tasks per node (``-N``/``--ntasks-per-node``, else the job's);
- in a one-node job it starts ``N`` copies of ``prog`` on this node (``-n``, else the job's
  ``SLURM_NTASKS``), each with ``SLURM_PROCID``/``SLURM_LOCALID``, and exits with the first
  non-zero exit status among them (0 when all succeed), as srun does.

Options srun has that do not apply here (binding, memory, time, …) are accepted and named in
one warning. Only the standard library is imported.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EXIT_USAGE = 64
WIRE = ("-m", "launcher.wire")

_VALUE_OPTIONS = {
    "--ntasks": "-n", "--nodes": "-N", "--ntasks-per-node": None, "--cpus-per-task": "-c",
    "--mpi": None, "--export": None, "--job-name": "-J", "--time": "-t", "--mem": None,
    "--mem-per-cpu": None, "--cpu-bind": None, "--distribution": "-m", "--gres": None,
    "--gpus": "-G", "--gpus-per-node": None, "--output": "-o", "--error": "-e",
    "--partition": "-p", "--nodelist": "-w", "--exclude": "-x",
}  # fmt: skip
_FLAGS = {"--label": "-l", "--unbuffered": "-u", "--exclusive": None, "--overlap": None,
          "--quiet": "-Q", "--verbose": "-v", "--kill-on-bad-exit": "-K"}  # fmt: skip
_USED = {"ntasks", "nodes", "ntasks_per_node"}


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``srun`` does: exec ``argv`` (multi-node) or start ``copies`` of ``argv``."""

    argv: tuple[str, ...]
    copies: int
    """1 for the multi-node launch (MPI starts the ranks)."""
    multi_node: bool
    ignored: tuple[str, ...]


def plan(args: Sequence[str], env: Mapping[str, str], python: str = sys.executable) -> Plan:
    """The launch for ``srun args``; ValueError naming the problem for bad usage."""
    p = argparse.ArgumentParser(prog="srun", allow_abbrev=False, add_help=False)
    for long, short in _VALUE_OPTIONS.items():
        names = [long, short] if short else [long]
        p.add_argument(*names, dest=long[2:].replace("-", "_"))
    for long, short in _FLAGS.items():
        names = [long, short] if short else [long]
        p.add_argument(*names, dest=long[2:].replace("-", "_"), action="store_true")
    p.add_argument("command", nargs=argparse.REMAINDER)
    try:
        ns = p.parse_args(list(args))
    except SystemExit:
        raise ValueError("bad options (srun OPTIONS... COMMAND [ARGS...])") from None
    command = list(ns.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("no command given")
    given = {k for k, v in vars(ns).items() if v not in (None, False) and k != "command"}
    ignored = tuple(sorted("--" + k.replace("_", "-") for k in given - _USED))
    ntasks = _count(ns.ntasks, "-n")
    aliases = env.get("MNP_NODE_ALIASES", "").split()
    if env.get("MNP_WIRING_DIR") and len(aliases) > 1:
        nodes = _count(ns.nodes, "-N") or len(aliases)
        per_node = _count(ns.ntasks_per_node, "--ntasks-per-node") or _count(
            env.get("MNP_TASKS_PER_NODE"), "MNP_TASKS_PER_NODE"
        )
        ranks = ntasks or nodes * (per_node or 1)
        return Plan((python, *WIRE, "--np", str(ranks), "--", *command), 1, True, ignored)
    copies = ntasks or _count(env.get("SLURM_NTASKS"), "SLURM_NTASKS") or 1
    return Plan(tuple(command), copies, False, ignored)


def _count(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what} must be a whole number, at least 1, got {text!r}")
    return int(text)


def run_copies(argv: Sequence[str], copies: int, env: Mapping[str, str]) -> int:
    """Start ``copies`` of ``argv`` with their task ids; the first non-zero exit status
    (a signal N as 128+N), else 0. SIGTERM/SIGINT are passed on to every copy."""

    def task_env(i: int) -> dict[str, str]:
        ids = {"SLURM_PROCID": i, "SLURM_LOCALID": i, "SLURM_NTASKS": copies,
               "SLURM_STEP_NUM_TASKS": copies}  # fmt: skip
        return {**env, **{k: str(v) for k, v in ids.items()}}

    procs = [subprocess.Popen(list(argv), env=task_env(i)) for i in range(copies)]

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [proc.wait() for proc in procs]
    failed = [c if c >= 0 else 128 - c for c in codes if c != 0]
    return failed[0] if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        launch = plan(args, os.environ)
    except ValueError as e:
        print(f"srun: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if launch.ignored:
        print(f"srun: warning: ignored here: {' '.join(launch.ignored)}", file=sys.stderr)
    if launch.copies == 1:
        try:
            os.execvp(launch.argv[0], list(launch.argv))
        except OSError as e:
            print(f"srun: error: {launch.argv[0]}: {e}", file=sys.stderr)
            return 127
    try:
        return run_copies(launch.argv, launch.copies, os.environ)
    except OSError as e:
        print(f"srun: error: {launch.argv[0]}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
