"""One task of an ``srun`` step: its ``SLURM_*`` variables, output files and labels, then the
program.

``python /path/to/srun_task.py [--counts 2,2] [--step S] [--rank R] [--cpus-per-task C]
[--output PAT] [--error PAT] [--label] [--export SPEC] [--signal NUM@EPOCH] -- prog args...``

:mod:`launcher.srun` starts the tasks of a step through the job's MPI launcher (so an MPI
program forms one world of every task), each through this wrapper. The task's rank comes from
the launcher (``PMI_RANK``: MPICH/Intel hydra; ``OMPI_COMM_WORLD_RANK``/``PMIX_RANK``: Open
MPI), else ``--rank`` (tasks srun started itself). ``--counts`` is the step's tasks per node in
node order (Slurm's block layout: ranks fill the first node, then the next), from which the
node id and the rank on the node follow.

The task then execs the program, unless it must stay its parent: for ``--label`` (each line
prefixed ``<rank>: ``) or ``--signal`` (the signal sent to it at ``EPOCH``, the job's time
limit less ``--signal``'s time). The parent passes SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2
on and exits as the program did (a signal N as 128+N).

Run as a file, not a module, with the standard library only: ranks on other nodes start it
with a bare interpreter and the node's own environment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO

RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
EXIT_CANNOT_EXEC = 127
_PATTERN = re.compile(r"%(\d*)([%AaJjNnstux])")


def compress_counts(counts: Sequence[int]) -> str:
    """Slurm's ``SLURM_TASKS_PER_NODE``: runs of equal counts as ``N(xK)``, e.g. ``2(x2),1``."""
    out: list[str] = []
    i = 0
    while i < len(counts):
        j = i
        while j + 1 < len(counts) and counts[j + 1] == counts[i]:
            j += 1
        run = j - i + 1
        out.append(str(counts[i]) if run == 1 else f"{counts[i]}(x{run})")
        i = j + 1
    return ",".join(out)


def place(rank: int, counts: Sequence[int]) -> tuple[int, int]:
    """``(node id, rank on that node)`` of ``rank`` under block layout; ValueError if beyond."""
    start = 0
    for node, count in enumerate(counts):
        if rank < start + count:
            return node, rank - start
        start += count
    raise ValueError(f"task {rank} is beyond the step's {start} tasks")


def expand_pattern(pattern: str, fields: Mapping[str, str]) -> str:
    """An srun ``--output``/``--error`` name with Slurm's ``%`` fields replaced (``%t`` task,
    ``%n`` node id, ``%N`` node name, ``%j`` job, ``%s`` step, ``%J`` job.step, ``%u`` user,
    ``%x`` job name, ``%A``/``%a`` array job/task, ``%%``; a width such as ``%3t`` zero-pads)."""

    def one(m: re.Match[str]) -> str:
        width, key = m.group(1), m.group(2)
        if key == "%":
            return "%"
        value = fields.get(key, "")
        return value.zfill(int(width)) if width and value.isdigit() else value

    return _PATTERN.sub(one, pattern)


def pattern_fields(env: Mapping[str, str], rank: int, node: int, step: int) -> dict[str, str]:
    job = env.get("SLURM_JOB_ID", "")
    return {
        "t": str(rank), "n": str(node), "N": env.get("SLURMD_NODENAME", ""), "j": job,
        "s": str(step), "J": f"{job}.{step}", "u": env.get("USER", ""),
        "x": env.get("SLURM_JOB_NAME", ""), "A": env.get("SLURM_ARRAY_JOB_ID", job),
        "a": env.get("SLURM_ARRAY_TASK_ID", ""),
    }  # fmt: skip


def exported(spec: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """The environment ``--export`` gives a task: ``ALL`` (the default) everything; ``NONE``
    only ``SLURM_*``; names and ``NAME=value`` items those (after ``ALL``: on top of all)."""
    if not spec:
        return dict(env)
    items = [i for i in spec.split(",") if i]
    out = {k: v for k, v in env.items() if k.startswith("SLURM_")}
    if any(i.upper() == "ALL" for i in items):
        out = dict(env)
    for item in items:
        name, eq, value = item.partition("=")
        if name.upper() in ("ALL", "NONE", "NIL") and not eq:
            continue
        if eq:
            out[name] = value
        elif name in env:
            out[name] = env[name]
    return out


def task_environment(
    env: Mapping[str, str], counts: Sequence[int], rank: int, step: int, cpus_per_task: str | None
) -> dict[str, str]:
    """``env`` with the task's ``SLURM_*`` variables as Slurm sets them."""
    node, local = place(rank, counts)
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    ids = {
        "SLURM_PROCID": rank, "SLURM_LOCALID": local, "SLURM_NODEID": node,
        "SLURM_NTASKS": sum(counts), "SLURM_NPROCS": sum(counts),
        "SLURM_STEP_NUM_TASKS": sum(counts), "SLURM_STEP_NUM_NODES": len(counts),
        "SLURM_TASKS_PER_NODE": compress_counts(counts),
        "SLURM_STEP_TASKS_PER_NODE": compress_counts(counts),
        "SLURM_STEP_ID": step, "SLURM_STEPID": step, "SLURM_CPUS_ON_NODE": cpus,
        "SLURM_TASK_PID": os.getpid(),
    }  # fmt: skip
    out = {**env, **{k: str(v) for k, v in ids.items()}}
    if cpus_per_task:
        out["SLURM_CPUS_PER_TASK"] = cpus_per_task
    return out


def _relay(source: IO[bytes], sink: IO[bytes], prefix: bytes) -> None:
    for line in iter(source.readline, b""):
        sink.write(prefix + line)
        sink.flush()


def _supervise(
    argv: list[str], env: dict[str, str], label: str | None, signal_at: tuple[int, float] | None
) -> int:
    pipe = subprocess.PIPE if label is not None else None
    # close_fds=False: hydra's PMI_FD must reach the program
    proc = subprocess.Popen(argv, env=env, stdout=pipe, stderr=pipe, close_fds=False)

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    relays = []
    if label is not None:
        prefix = f"{label}: ".encode()
        for source, sink in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer)):
            assert source is not None
            t = threading.Thread(target=_relay, args=(source, sink, prefix), daemon=True)
            t.start()
            relays.append(t)
    if signal_at is not None:
        signum, when = signal_at
        while True:
            try:
                proc.wait(timeout=max(0.0, when - time.time()))
                break
            except subprocess.TimeoutExpired:
                proc.send_signal(signum)
                break
    code = proc.wait()
    for t in relays:
        t.join()
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("srun: error: task wrapper used without -- command", file=sys.stderr)
        return EXIT_CANNOT_EXEC
    cut = args.index("--")
    opts, command = args[:cut], args[cut + 1 :]
    o: dict[str, str] = {}
    flags = {"--label"}
    i = 0
    while i < len(opts):
        if opts[i] in flags:
            o[opts[i]] = "1"
            i += 1
        else:
            o[opts[i]] = opts[i + 1]
            i += 2
    counts = [int(c) for c in o.get("--counts", "1").split(",")]
    rank_text = next((os.environ[v] for v in RANK_VARIABLES if v in os.environ), None)
    rank = int(rank_text if rank_text is not None else o.get("--rank", "0"))
    step = int(o.get("--step", "0"))
    env = task_environment(
        exported(o.get("--export"), os.environ), counts, rank, step, o.get("--cpus-per-task")
    )
    node = int(env["SLURM_NODEID"])
    fields = pattern_fields(env, rank, node, step)
    for option, fd in (("--output", 1), ("--error", 2)):
        if option in o:
            path = expand_pattern(o[option], fields)
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, fd)
            os.close(out)
    if "--output" in o and "--error" not in o:
        os.dup2(1, 2)  # srun: stderr follows --output unless --error names its own file
    label = None
    if "--label" in o:
        label = str(rank).rjust(len(str(max(0, sum(counts) - 1))))
    signal_at = None
    if "--signal" in o:
        num, _, when = o["--signal"].partition("@")
        signal_at = (int(num), float(when))
    try:
        if label is None and signal_at is None:
            os.execvpe(command[0], command, env)
        return _supervise(command, env, label, signal_at)
    except OSError as e:
        print(f"srun: error: {command[0]}: {e.strerror or e}", file=sys.stderr)
        return EXIT_CANNOT_EXEC


if __name__ == "__main__":
    sys.exit(main())
