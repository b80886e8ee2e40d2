"""``srun`` inside an mnp batch job: start a command as a job step of N tasks, as Slurm does.

The node agent puts an ``srun`` on the ``PATH`` of every attempt that runs a batch script
(``mnp sbatch``; :func:`launcher.attempt.install_srun`).

- **Layout.** ``-N`` nodes of the job (default: all, fewer when ``-n`` is smaller), ``-n``
  tasks (default: nodes × ``--ntasks-per-node``, else the job's ``SLURM_NTASKS``), spread as
  Slurm's block layout spreads them (``-n 5`` on 3 nodes: 2,2,1; ``--ntasks-per-node`` caps a
  node). ``srun -N 2 --ntasks-per-node 1 torchrun …`` runs once per node.
- **One MPI job.** The tasks are started by the MPI launcher of the allocation: on a
  multi-node job ``python -m launcher.wire`` with a hostfile of the step's nodes and counts (SSH
  and environment already wired), on one node ``mpiexec`` there (hydra: ``-launcher fork``;
  Open MPI: ``--host localhost:N``). An MPI program so forms one world of N ranks; any other
  program just runs N times. Each task goes through :mod:`launcher.srun_task`, which sets
  ``SLURM_PROCID``/``SLURM_LOCALID``/``SLURM_NODEID``/``SLURM_NTASKS``/``SLURM_CPUS_ON_NODE``/
  ``SLURM_TASKS_PER_NODE``/``SLURM_STEP_ID`` from the launcher's rank. ``--mpi=none`` on one
  node, or no ``mpiexec`` to be found, starts the N tasks directly (each then its own world).
- **The program** is found as Slurm's srun finds it: ``./x`` or ``a/x`` in the working
  directory (``-D``), ``/x`` as given, a bare name on ``PATH``, then in the working directory.
- **Exit status**: the launcher's (a failing task fails the step); tasks started directly:
  the highest task exit status (a signal N as 128+N).
- ``--signal=SIG[@TIME]`` (or ``SLURM_SIGNAL`` in the environment, which ``sbatch --signal``
  sets) sends SIG (default time 60 s) to every task TIME seconds before the job's time limit
  (``SLURM_JOB_END_TIME``, set by the agent when the job has one); ``B:`` specs are for the
  batch shell, not steps, and are left to the agent.
- ``-l`` prefixes lines with the task id, ``-o``/``-e`` take Slurm's ``%t``/``%n``/``%N``/
  ``%j``/``%s`` file patterns, ``--export`` ``ALL``/``NONE``/names as srun's.
- Options that do not apply (binding, memory, GPUs, time, partition, node lists, …) are
  accepted and named in one warning (``-Q`` silences it). Long options may be abbreviated.

**Outside an allocation** (no ``SLURM_JOB_ID``) srun refuses, exit 1, pointing at
``mnp run``/``mnp sbatch``: Slurm's srun would create a job there, and running the command on
the submitting machine instead would silently give the wrong answer.

Exit 64 for bad usage, 127 when the program cannot be found.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from launcher import srun_task
from launcher.wire.launch import launcher_candidates, resolve_launcher
from launcher.wire.options import WireError
from mnp.build import mpi

EXIT_USAGE = 64
EXIT_NOT_FOUND = 127
EXIT_NO_ALLOCATION = 1
TASK_WRAPPER = str(Path(srun_task.__file__).resolve())
WIRE = ("-m", "launcher.wire")

# long name -> (short letter, kind); kind "value" takes an argument, "flag" none, "optional"
# only as --name=value (getopt's optional_argument). Used options first, then accepted ones.
_USED = {
    "ntasks": ("n", "value"), "nodes": ("N", "value"), "ntasks-per-node": (None, "value"),
    "cpus-per-task": ("c", "value"), "mpi": (None, "value"), "label": ("l", "flag"),
    "export": (None, "value"), "output": ("o", "value"), "error": ("e", "value"),
    "chdir": ("D", "value"), "signal": (None, "value"), "unbuffered": ("u", "flag"),
    "quiet": ("Q", "flag"), "verbose": ("v", "flag"), "job-name": ("J", "value"),
    "kill-on-bad-exit": ("K", "optional"), "overlap": (None, "flag"), "exact": (None, "flag"),
    "jobid": (None, "value"), "wait": ("W", "value"), "overcommit": ("O", "flag"),
}  # fmt: skip
_NOT_APPLICABLE = {
    "account": ("A", "value"), "time": ("t", "value"), "mem": (None, "value"),
    "mem-per-cpu": (None, "value"), "mem-per-gpu": (None, "value"), "mem-bind": (None, "value"),
    "cpu-bind": (None, "value"), "distribution": ("m", "value"), "gres": (None, "value"),
    "gpus": ("G", "value"), "gpus-per-node": (None, "value"), "gpus-per-task": (None, "value"),
    "gpu-bind": (None, "value"), "partition": ("p", "value"), "nodelist": ("w", "value"),
    "exclude": ("x", "value"), "constraint": ("C", "value"), "qos": ("q", "value"),
    "hint": (None, "value"), "threads-per-core": (None, "value"), "input": ("i", "value"),
    "cores-per-socket": (None, "value"), "sockets-per-node": (None, "value"),
    "ntasks-per-core": (None, "value"), "ntasks-per-socket": (None, "value"),
    "ntasks-per-gpu": (None, "value"), "cpu-freq": (None, "value"), "comment": (None, "value"),
    "reservation": (None, "value"), "begin": ("b", "value"), "dependency": ("d", "value"),
    "licenses": ("L", "value"), "network": (None, "value"), "open-mode": (None, "value"),
    "tres-per-task": (None, "value"), "accel-bind": (None, "value"), "tmp": (None, "value"),
    "mincpus": (None, "value"), "time-min": (None, "value"), "nice": (None, "optional"),
    "exclusive": (None, "optional"), "propagate": (None, "optional"),
    "immediate": ("I", "optional"), "whole": (None, "flag"), "no-kill": ("k", "optional"),
    "preserve-env": ("E", "flag"), "pty": (None, "flag"), "disable-status": ("X", "flag"),
    "spread-job": (None, "flag"), "use-min-nodes": (None, "flag"), "contiguous": (None, "flag"),
    "prolog": (None, "value"), "epilog": (None, "value"), "task-prolog": (None, "value"),
    "task-epilog": (None, "value"), "container": (None, "value"), "switches": (None, "value"),
}  # fmt: skip
_OPTIONS = {**_USED, **_NOT_APPLICABLE}
_SHORT = {short: long for long, (short, _) in _OPTIONS.items() if short}
MPI_PLUGINS = ("none", "pmi2", "pmix", "pmix_v3", "pmix_v4", "pmix_v5", "cray_shasta")


class UsageError(ValueError):
    """Bad usage of srun; the message goes after ``srun: error:``."""


@dataclass(frozen=True, slots=True)
class Request:
    """srun's command line: the options it uses, by long name, and the command."""

    values: dict[str, str]
    command: tuple[str, ...]
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """What one srun starts."""

    counts: tuple[int, ...]
    """Tasks per node, in node order (the main node first)."""
    nodes: tuple[str, ...]
    """The step's nodes' aliases (empty: this node only)."""
    command: tuple[str, ...]
    """The program, found (see :func:`find_program`), and its arguments."""
    task_args: tuple[str, ...] = field(default=())
    """Options of :mod:`launcher.srun_task`."""
    mpi: str = "auto"


def parse(args: Sequence[str]) -> Request:
    """srun's options and command as getopt reads them (options end at the first word that is
    not one, or at ``--``); :class:`UsageError` naming the problem."""
    values: dict[str, str] = {}
    args = list(args)
    i = 0

    def take(name: str, attached: str | None) -> int:
        kind = _OPTIONS[name][1]
        if kind == "flag":
            if attached is not None:
                raise UsageError(f"option '--{name}' doesn't allow an argument")
            values[name] = "1"
            return 1
        if kind == "optional":
            values[name] = attached if attached is not None else "1"
            return 1
        if attached is not None:
            values[name] = attached
            return 1
        if i + 1 >= len(args):
            raise UsageError(f"option '--{name}' requires an argument")
        values[name] = args[i + 1]
        return 2

    while i < len(args):
        tok = args[i]
        if tok == "--":
            i += 1
            break
        if tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            i += take(_long(name), val if eq else None)
        elif tok.startswith("-") and len(tok) > 1:
            j = 1
            while j < len(tok):
                letter = tok[j]
                if letter not in _SHORT:
                    raise UsageError(f"invalid option -- '{letter}'")
                name = _SHORT[letter]
                rest = tok[j + 1 :]
                if _OPTIONS[name][1] == "flag":
                    values[name] = "1"
                    j += 1
                    continue
                if _OPTIONS[name][1] == "optional":
                    values[name] = rest or "1"
                    i += 1
                else:
                    i += take(name, rest or None)
                break
            else:
                i += 1
        else:
            break
    command = tuple(args[i:])
    if not command:
        raise UsageError("no command given (srun OPTIONS... COMMAND [ARGS...])")
    ignored = tuple(sorted(f"--{n}" for n in values if n in _NOT_APPLICABLE))
    return Request(values, command, ignored)


def _long(prefix: str) -> str:
    if prefix in _OPTIONS:
        return prefix
    found = [n for n in _OPTIONS if n.startswith(prefix)] if prefix else []
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"option '--{prefix}' is ambiguous: {', '.join('--' + f for f in found)}")
    raise UsageError(f"unrecognized option '--{prefix}'")


def count(text: str | None, what: str) -> int | None:
    """A positive whole number (``-N 2-4``: its lower bound), None when absent."""
    if text is None or text == "":
        return None
    low = text.split("-", 1)[0]
    if not low.isdigit() or int(low) < 1:
        raise UsageError(f"{what} must be a whole number, at least 1, got {text!r}")
    return int(low)


def layout(
    ntasks: int | None, nodes: int | None, per_node: int | None, job_nodes: int, job_tasks: int
) -> tuple[int, ...]:
    """Tasks per node as Slurm lays a step out on ``job_nodes`` nodes: a task to each node in
    turn (at most ``per_node`` each), then numbered node by node."""
    if nodes is not None and nodes > job_nodes:
        raise UsageError(f"only {job_nodes} node(s) in this job's allocation; -N {nodes} asked")
    if ntasks is None:
        if per_node is not None:
            ntasks = (nodes or job_nodes) * per_node
        elif nodes is not None and nodes < job_nodes:
            ntasks = nodes * max(1, math.ceil(job_tasks / job_nodes))
        else:
            ntasks = job_tasks
    k = min(nodes or job_nodes, ntasks)
    cap = per_node if per_node is not None else ntasks
    if ntasks > k * cap:
        raise UsageError(f"{ntasks} tasks do not fit on {k} node(s) at {cap} per node")
    counts = [0] * k
    for t in range(ntasks):
        counts[t % k] += 1
    return tuple(counts)


def find_program(name: str, cwd: str, path: str) -> str | None:
    """Slurm's order: ``.``-relative or with a ``/`` from ``cwd``, absolute as given, a bare
    name on ``path`` and then in ``cwd``; None when nothing executable is there."""

    def ok(p: str) -> bool:
        return os.path.isfile(p) and os.access(p, os.X_OK)

    if name.startswith("/"):
        return name if ok(name) else None
    if "/" in name or name.startswith("."):
        p = os.path.normpath(os.path.join(cwd, name))
        return p if ok(p) else None
    found = shutil.which(name, path=path)
    if found is not None:
        return os.path.abspath(found)
    p = os.path.join(cwd, name)
    return p if ok(p) else None


def parse_signal(spec: str) -> tuple[str, int, int]:
    """``[R:|B:]SIG[@TIME]`` → ``(prefix, signal number, seconds)``; TIME defaults to 60."""
    prefix = ""
    if len(spec) > 2 and spec[1] == ":" and spec[0].upper() in "RB":
        prefix, spec = spec[0].upper(), spec[2:]
    name, _, when = spec.partition("@")
    upper = name.upper() if name.upper().startswith("SIG") else "SIG" + name.upper()
    try:
        num = int(name) if name.isdigit() else signal.Signals[upper].value
        seconds = int(when) if when else 60
    except (KeyError, ValueError):
        raise UsageError(f"--signal={spec!r}: want [B:]SIG[@TIME], e.g. USR2@90") from None
    if not 0 <= seconds <= 65535:
        raise UsageError("--signal's time must be 0..65535 seconds")
    return prefix, num, seconds


def plan(req: Request, env: Mapping[str, str], cwd: str, step_id: int) -> Step:
    """The step ``req`` starts in the job ``env`` describes; :class:`UsageError` for bad usage."""
    v = req.values
    aliases = tuple(env.get("MNP_NODE_ALIASES", "").split())
    multi = bool(env.get("MNP_WIRING_DIR")) and len(aliases) > 1
    job_nodes = len(aliases) if multi else 1
    job_tasks = count(env.get("SLURM_NTASKS"), "SLURM_NTASKS") or job_nodes
    counts = layout(
        count(v.get("ntasks"), "-n"), count(v.get("nodes"), "-N"),
        count(v.get("ntasks-per-node"), "--ntasks-per-node"), job_nodes, job_tasks,
    )  # fmt: skip
    workdir = os.path.join(cwd, v["chdir"]) if "chdir" in v else cwd
    program = find_program(req.command[0], workdir, env.get("PATH", ""))
    if program is None:
        raise FileNotFoundError(req.command[0])
    task = ["--counts", ",".join(map(str, counts)), "--step", str(step_id)]
    for name in ("output", "error", "export", "cpus-per-task"):
        if name in v:
            task += [f"--{name}", v[name]]
    if "label" in v:
        task.append("--label")
    spec = v.get("signal") or env.get("SLURM_SIGNAL")
    end = env.get("SLURM_JOB_END_TIME", "")
    if spec:
        prefix, num, seconds = parse_signal(spec)
        if prefix != "B" and end.isdigit():
            task += ["--signal", f"{num}@{int(end) - seconds}"]
    choice = v.get("mpi", "auto")
    if choice not in (*MPI_PLUGINS, *mpi.FLAVOURS, "auto"):
        raise UsageError(f"--mpi={choice}: known: {', '.join((*MPI_PLUGINS, *mpi.FLAVOURS))}")
    flavour = choice if choice in mpi.FLAVOURS else ("none" if choice == "none" else "auto")
    return Step(
        counts, aliases[: len(counts)] if multi else (), (program, *req.command[1:]),
        tuple(task), flavour,
    )  # fmt: skip


def local_argv(flavour: str, mpiexec: str, ranks: int, command: Sequence[str]) -> list[str]:
    """The launch of ``ranks`` ranks of ``command`` on this node alone, no SSH."""
    if flavour == "openmpi":
        return [mpiexec, "-np", str(ranks), "--host", f"localhost:{ranks}", "--bind-to", "none",
                *command]  # fmt: skip
    if flavour == "intelmpi":
        return [mpiexec, "-n", str(ranks), "-bootstrap", "fork", *command]
    return [mpiexec, "-launcher", "fork", "-n", str(ranks), *command]


def step_hostfiles(directory: str, nodes: Sequence[str], counts: Sequence[int]) -> None:
    """Every flavour's hostfile of the step: its nodes with its counts as slots."""
    for f in mpi.FLAVOURS.values():
        text = mpi.hostfile(f.name, list(zip(nodes, counts, strict=True)))
        Path(directory, f.hostfile_name).write_text(text)


def next_step_id(env: Mapping[str, str]) -> int:
    """0 for the job's first srun, then 1, 2, …: a counter beside the job's ``srun`` (in the
    attempt's own ``bin``); 0 always when there is none."""
    for d in env.get("PATH", "").split(os.pathsep):
        shim = Path(d or ".", "srun")
        try:
            if b"launcher.srun" not in shim.read_bytes()[:4096]:
                continue
            fd = os.open(Path(d, ".srun-steps"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        with os.fdopen(fd, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            text = f.read().strip()
            step = int(text) + 1 if text.isdigit() else 0
            f.seek(0)
            f.truncate()
            f.write(str(step))
        return step
    return 0


def _truncate_outputs(req: Request, env: Mapping[str, str], step: Step, cwd: str) -> None:
    """srun opens each task's files once, truncating: done here, so tasks only append."""
    names = step.nodes or (env.get("SLURMD_NODENAME", ""),)
    step_id = int(step.task_args[step.task_args.index("--step") + 1])
    paths: set[str] = set()
    rank = 0
    for node, n in enumerate(step.counts):
        for _ in range(n):
            fields = srun_task.pattern_fields(env, rank, node, step_id)
            fields["N"] = names[node]
            for name in ("output", "error"):
                if name in req.values:
                    paths.add(srun_task.expand_pattern(req.values[name], fields))
            rank += 1
    for p in paths:
        with contextlib.suppress(OSError):
            os.close(os.open(os.path.join(cwd, p), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))


def _wait(procs: list[subprocess.Popen[bytes]]) -> int:
    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    for sig in srun_task.FORWARDED:
        signal.signal(sig, forward)
    codes = [proc.wait() for proc in procs]
    return max(c if c >= 0 else 128 - c for c in codes)


def launch(step: Step, env: Mapping[str, str], python: str = sys.executable) -> int:
    """Start the step's tasks and wait for them; the step's exit status."""
    tasks = [python, TASK_WRAPPER, *step.task_args, "--", *step.command]
    ranks = sum(step.counts)
    if step.nodes:
        with tempfile.TemporaryDirectory(prefix="mnp-step-") as d:
            step_hostfiles(d, step.nodes, step.counts)
            wire = [python, *WIRE, "--np", str(ranks), "--hostfile-dir", d, "--no-probe",
                    "--ready-timeout", "0"]  # fmt: skip
            if step.mpi not in ("auto", "none"):
                wire += ["--mpi", step.mpi]
            return _wait([subprocess.Popen([*wire, "--", *tasks], env=dict(env))])
    mpiexec = None
    if step.mpi != "none":
        try:
            choice = step.mpi if step.mpi in mpi.FLAVOURS else "auto"
            mpiexec, flavour = resolve_launcher(
                choice, None, launcher_candidates(python, env.get("PATH", ""))
            )
        except WireError:
            if ranks > 1:
                print(f"srun: warning: no mpiexec found: starting {ranks} tasks directly "
                      "(an MPI program then runs as worlds of one)", file=sys.stderr)  # fmt: skip
    if mpiexec is not None:
        run_env = {**mpi.flavour(flavour).fixed_env, **env}
        return _wait([subprocess.Popen(local_argv(flavour, mpiexec, ranks, tasks), env=run_env)])
    procs = [subprocess.Popen([*tasks[:2], "--rank", str(r), *tasks[2:]], env=dict(env))
             for r in range(ranks)]  # fmt: skip
    return _wait(procs)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    env = os.environ
    try:
        req = parse(args)
        if req.values.get("mpi") == "list":
            print("MPI plugin types are...\n" + "\n".join(MPI_PLUGINS))
            return 0
        if not env.get("SLURM_JOB_ID"):
            print("srun: error: not inside a job allocation (no SLURM_JOB_ID): run commands as "
                  "jobs with `mnp run` or `mnp sbatch`, whose scripts' srun lines start the "
                  "tasks", file=sys.stderr)  # fmt: skip
            return EXIT_NO_ALLOCATION
        cwd = os.getcwd()
        step = plan(req, env, cwd, next_step_id(env))
    except UsageError as e:
        print(f"srun: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as e:
        print(f"srun: error: Unable to find executable {e.args[0]!r} (PATH, then the working "
              "directory)", file=sys.stderr)  # fmt: skip
        return EXIT_NOT_FOUND
    if req.ignored and "quiet" not in req.values:
        print(f"srun: warning: ignored here: {' '.join(req.ignored)}", file=sys.stderr)
    spec = req.values.get("signal")
    if spec and parse_signal(spec)[0] == "B":
        print("srun: warning: --signal=B:… is for the batch shell; give it to sbatch",
              file=sys.stderr)  # fmt: skip
    if "chdir" in req.values:
        os.chdir(os.path.join(cwd, req.values["chdir"]))
    _truncate_outputs(req, env, step, os.getcwd())
    sys.stdout.flush()
    try:
        return launch(step, env)
    except OSError as e:
        print(f"srun: error: {step.command[0]}: {e}", file=sys.stderr)
        return EXIT_NOT_FOUND


if __name__ == "__main__":
    sys.exit(main())
