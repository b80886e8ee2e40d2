# One file on purpose (~550 lines): it runs inside jobs and the import contract lets it import
# only the standard library and mnp.spec/mnp.build, not sibling modules of its own.
"""The main node's MPI launcher for a multi-node parallel (MNP) job.

``python -m launcher.wire [--mpi auto|openmpi|mpich|intelmpi|none] [--mpiexec PATH] [--np N]
[--iface IF] [-x NAME]... [--ready-timeout S] [--dry-run] -- command...``

Runs on the main node. It waits until every other node of the job answers
``ssh -F <ssh_config> <alias> true``, then replaces itself (``execve``) with ``mpirun``/
``mpiexec`` starting ``command`` on all nodes, so the job's exit code is MPI's. With
``--mpi none`` it execs ``command`` as it is once the nodes are ready. ``--dry-run`` prints
the launch argv, one argument per line, and neither waits nor launches.

Environment contract (set by the head node on the main node):

``MNP_WIRING_DIR`` (required unless ``--mpi none`` on one node)
    Absolute directory holding ``ssh_config``, ``known_hosts``, ``id_ed25519``,
    ``hostfile.openmpi``, ``hostfile.mpich`` and ``ssh-wrapper`` (hostfiles list the node
    aliases, main first, with the tasks per node as slots).
``MNP_NODE_ALIASES`` (required)
    Space-separated ssh aliases of the job's nodes, main node first (``node0 node1 …``).
``MNP_NUM_NODES`` (optional)
    Number of nodes; when set it must equal the number of aliases.
``MNP_NODE_INDEX``, ``MNP_MAIN_NODE_INDEX`` (optional)
    This node's index and the main node's (default ``AWS_BATCH_JOB_MAIN_NODE_INDEX``, else
    0); when both are known they must be equal: MPI is started by the main node only.
``MNP_TASKS_PER_NODE`` (optional, default 1)
    Ranks per node; ranks default to nodes × tasks per node.
``MNP_MPI_IFACE`` (optional)
    Network interface (or Open MPI list/CIDR) MPI traffic is pinned to; ``--iface`` wins.
``MNP_MPI_FORWARD_ENV`` (optional)
    Names (space- or comma-separated) of variables forwarded to every rank, with ``-x``.

A command name without ``/`` is resolved on this node's ``PATH`` first, because remote
nodes start ranks with their own, non-interactive ``PATH``.

Exit codes of the launcher itself (after the exec, the code is MPI's): 64 bad arguments or
environment, 69 no usable ``mpiexec``, 70 nodes not ready before ``--ready-timeout``,
127 the command (``--mpi none``) cannot be executed.

Only the standard library and the plain-data parts of ``mnp`` are imported.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mnp.build import mpi

ENV_WIRING_DIR = "MNP_WIRING_DIR"
ENV_NODE_ALIASES = "MNP_NODE_ALIASES"
ENV_NUM_NODES = "MNP_NUM_NODES"
ENV_NODE_INDEX = "MNP_NODE_INDEX"
ENV_MAIN_NODE_INDEX = "MNP_MAIN_NODE_INDEX"
ENV_BATCH_MAIN_NODE_INDEX = "AWS_BATCH_JOB_MAIN_NODE_INDEX"
ENV_TASKS_PER_NODE = "MNP_TASKS_PER_NODE"
ENV_IFACE = "MNP_MPI_IFACE"
ENV_FORWARD = "MNP_MPI_FORWARD_ENV"

EXIT_USAGE = 64
EXIT_UNAVAILABLE = 69
EXIT_NOT_READY = 70
EXIT_CANNOT_EXEC = 127

DEFAULT_READY_TIMEOUT = 60.0
PROBE_TIMEOUT = 10.0
"""Longest single ``ssh … true``; the overall wait is bounded by ``--ready-timeout``."""
MIN_PROBE_TIMEOUT = 1.0
"""Shortest probe: ssh's ``ConnectTimeout`` counts whole seconds."""
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 2.0
VERSION_TIMEOUT = 10.0
MPI_CHOICES = ("auto", *mpi.FLAVOURS, "none")


class WireError(Exception):
    """Stop before launching: ``message`` goes to stderr, ``exit_code`` is the exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Options:
    mpi: str
    mpiexec: str | None
    np: int | None
    iface: str | None
    forward_env: tuple[str, ...]
    ready_timeout: float
    dry_run: bool
    command: tuple[str, ...]
    ready_file: str | None = None
    probe: bool = True


@dataclass(frozen=True, slots=True)
class Layout:
    """The job as the head node described it in the environment."""

    wiring_dir: str | None
    aliases: tuple[str, ...]
    tasks_per_node: int
    iface: str | None
    forward_env: tuple[str, ...]

    @property
    def others(self) -> tuple[str, ...]:
        """Aliases of every node but the main one."""
        return self.aliases[1:]


def parse_args(argv: Sequence[str]) -> Options:
    """Options and command from ``argv``; the command follows ``--`` (or the first
    non-option). Raises :class:`WireError` (64) for bad usage."""
    argv = list(argv)
    if "--" in argv:
        cut = argv.index("--")
        opts, command = argv[:cut], argv[cut + 1 :]
    else:
        opts, command = argv, []
    try:
        ns = _parser(command_positional="--" not in argv).parse_args(opts)
    except SystemExit as e:  # argparse printed the problem already
        raise WireError("", EXIT_USAGE if e.code else 0) from None
    if "--" not in argv:
        command = list(ns.command)
    if not command:
        raise WireError("no command given (put it after --)", EXIT_USAGE)
    if ns.np is not None and ns.np < 1:
        raise WireError(f"--np must be at least 1, got {ns.np}", EXIT_USAGE)
    if ns.ready_timeout < 0:
        raise WireError("--ready-timeout must not be negative", EXIT_USAGE)
    return Options(
        mpi=ns.mpi,
        mpiexec=ns.mpiexec,
        np=ns.np,
        iface=ns.iface or None,
        forward_env=tuple(_names(" ".join(ns.forward_env))),
        ready_timeout=ns.ready_timeout,
        dry_run=ns.dry_run,
        command=tuple(command),
        ready_file=ns.ready_file,
        probe=not ns.no_probe,
    )


def _parser(command_positional: bool) -> argparse.ArgumentParser:
    """The option parser; with ``command_positional`` the command is its trailing
    arguments (there was no ``--``)."""
    p = argparse.ArgumentParser(
        prog="python -m launcher.wire",
        description="Wait for an MNP job's nodes, then start its command with MPI.",
        epilog=(
            f"environment (set by the head node): {ENV_WIRING_DIR}, {ENV_NODE_ALIASES} "
            f"(main first), {ENV_NUM_NODES}, {ENV_NODE_INDEX}, {ENV_MAIN_NODE_INDEX}, "
            f"{ENV_TASKS_PER_NODE}, {ENV_IFACE}, {ENV_FORWARD}. Exit codes: {EXIT_USAGE} usage, "
            f"{EXIT_UNAVAILABLE} no mpiexec, {EXIT_NOT_READY} nodes not ready; else the command's."
        ),
    )
    p.add_argument("--mpi", choices=MPI_CHOICES, default="auto")
    p.add_argument("--mpiexec", help="launcher to use (default: next to python, else PATH)")
    p.add_argument("--np", type=int, help="ranks (default: nodes × MNP_TASKS_PER_NODE)")
    p.add_argument("--iface", help=f"pin MPI to this interface (default: ${ENV_IFACE})")
    p.add_argument(
        "-x", "--forward-env", action="append", default=[], metavar="NAME",
        help="forward this variable to every rank (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--ready-timeout", type=float, default=DEFAULT_READY_TIMEOUT, metavar="S",
        help=f"seconds to wait for the other nodes' SSH (default {DEFAULT_READY_TIMEOUT:g})",
    )  # fmt: skip
    p.add_argument(
        "--ready-file", metavar="PATH",
        help="first wait (within --ready-timeout) for this file: the node agent creates it "
        "once the head node has seen every other node start",
    )  # fmt: skip
    p.add_argument(
        "--no-probe", action="store_true",
        help="do not probe the other nodes over SSH (they run their own commands)",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the argv, one per line")
    if command_positional:
        p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def _names(text: str) -> list[str]:
    return [n for n in re.split(r"[\s,]+", text) if n]


def _int(env: Mapping[str, str], name: str, problems: list[str]) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        problems.append(f"{name}={raw!r} is not an integer")
        return None


def layout_from_env(env: Mapping[str, str], *, need_wiring: bool) -> Layout:
    """The job layout from the head node's variables; :class:`WireError` (64) naming every
    problem at once."""
    problems: list[str] = []
    aliases = tuple(env.get(ENV_NODE_ALIASES, "").split())
    if not aliases:
        problems.append(f"{ENV_NODE_ALIASES} is unset or empty")
    elif len(set(aliases)) != len(aliases):
        problems.append(f"{ENV_NODE_ALIASES} lists a node twice: {' '.join(aliases)}")
    num_nodes = _int(env, ENV_NUM_NODES, problems)
    if num_nodes is not None and aliases and num_nodes != len(aliases):
        problems.append(f"{ENV_NUM_NODES}={num_nodes} but {ENV_NODE_ALIASES} has {len(aliases)}")
    node_index = _int(env, ENV_NODE_INDEX, problems)
    main_index = _int(env, ENV_MAIN_NODE_INDEX, problems)
    if main_index is None:
        main_index = _int(env, ENV_BATCH_MAIN_NODE_INDEX, problems)
    if node_index is not None and node_index != (main_index or 0):
        problems.append(
            f"this is node {node_index}, not the main node {main_index or 0}: "
            "launcher.wire runs on the main node only"
        )
    tasks = _int(env, ENV_TASKS_PER_NODE, problems)
    if tasks is not None and tasks < 1:
        problems.append(f"{ENV_TASKS_PER_NODE} must be at least 1, got {tasks}")
    wiring_dir = env.get(ENV_WIRING_DIR, "") or None
    if wiring_dir is None and need_wiring:
        problems.append(f"{ENV_WIRING_DIR} is unset or empty")
    if problems:
        raise WireError("bad job environment: " + "; ".join(problems), EXIT_USAGE)
    return Layout(
        wiring_dir=None if wiring_dir is None else os.path.abspath(wiring_dir),
        aliases=aliases,
        tasks_per_node=tasks or 1,
        iface=env.get(ENV_IFACE, "").strip() or None,
        forward_env=tuple(_names(env.get(ENV_FORWARD, ""))),
    )


# ---- readiness -------------------------------------------------------------------------

Probe = Callable[[Sequence[str], float], dict[str, str | None]]
"""Probe ``nodes`` once within ``timeout`` seconds: node → None if ready, else why not."""


def ssh_probe(ssh_config: str, ssh: str = "ssh") -> Probe:
    """A :data:`Probe` running ``ssh -F ssh_config <alias> true`` for all nodes at once."""

    def probe(nodes: Sequence[str], timeout: float) -> dict[str, str | None]:
        limit = max(1, int(timeout))
        procs: dict[str, subprocess.Popen[str] | str] = {}
        for node in nodes:
            argv = [
                ssh, "-F", ssh_config, "-o", "BatchMode=yes", "-o", "ConnectionAttempts=1",
                "-o", f"ConnectTimeout={limit}", node, "true",
            ]  # fmt: skip
            try:
                procs[node] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True, errors="replace",
                )  # fmt: skip
            except OSError as e:
                procs[node] = f"cannot run {ssh}: {e}"
        out: dict[str, str | None] = {}
        deadline = time.monotonic() + timeout
        for node, proc in procs.items():
            if isinstance(proc, str):
                out[node] = proc
                continue
            try:
                _, stderr = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                out[node] = f"ssh did not answer within {timeout:.1f} s"
                continue
            if proc.returncode == 0:
                out[node] = None
            else:
                lines = [ln for ln in stderr.splitlines() if ln.strip()]
                out[node] = lines[-1] if lines else f"ssh exited with {proc.returncode}"
        return out

    return probe


def wait_until_ready(
    nodes: Sequence[str],
    probe: Probe,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Probe ``nodes`` with backoff until all answer or ``timeout`` seconds pass.

    Returns the nodes that never became ready, each with its last error (empty: all
    ready). Every node is probed at least once, and once more at the deadline: the wait
    overruns ``timeout`` by at most one short probe (:data:`MIN_PROBE_TIMEOUT`).
    """
    deadline = clock() + timeout
    pending = list(nodes)
    errors: dict[str, str] = {}
    backoff = FIRST_BACKOFF
    while pending:
        limit = min(PROBE_TIMEOUT, max(MIN_PROBE_TIMEOUT, deadline - clock()))
        results = probe(pending, limit)
        for node in list(pending):
            error = results.get(node, "not probed")
            if error is None:
                pending.remove(node)
                errors.pop(node, None)
            else:
                errors[node] = error
        remaining = deadline - clock()
        if not pending or remaining <= 0:
            break
        sleep(min(backoff, remaining))
        backoff = min(backoff * 2, MAX_BACKOFF)
    return {n: errors[n] for n in pending}


# ---- mpiexec ---------------------------------------------------------------------------


def launcher_candidates(executable: str, path: str) -> list[str]:
    """Where to look for ``mpiexec`` when none is given: next to ``executable`` (a pip MPI
    wheel installs it beside python), then every ``PATH`` directory; existing files only,
    each real file once."""
    dirs = [str(Path(executable).parent), *(d for d in path.split(os.pathsep) if d)]
    seen: set[str] = set()
    found = []
    for d in dirs:
        for name in ("mpiexec", "mpirun"):
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                real = os.path.realpath(p)
                if real not in seen:
                    seen.add(real)
                    found.append(p)
    return found


def version_text(mpiexec: str) -> str:
    """``mpiexec --version`` output (stdout and stderr); ``""`` if it cannot be run."""
    try:
        r = subprocess.run(
            [mpiexec, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, errors="replace", timeout=VERSION_TIMEOUT,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout + r.stderr


def resolve_launcher(
    choice: str,
    explicit: str | None,
    candidates: Sequence[str],
    version: Callable[[str], str] = version_text,
) -> tuple[str, str]:
    """``(mpiexec path, flavour)``. An explicit path with an explicit flavour is trusted as
    given; otherwise flavours are detected from ``--version``, and with an explicit flavour
    the first candidate of that flavour wins. :class:`WireError` (69) when none fits."""
    if explicit is not None:
        path = shutil.which(explicit) or explicit
        if choice != "auto":
            return path, choice
        text = version(path)
        try:
            return path, mpi.detect_flavour(text)
        except ValueError as e:
            raise WireError(f"{path}: {e}", EXIT_UNAVAILABLE) from None
    seen = []
    for path in candidates:
        try:
            found = mpi.detect_flavour(version(path))
        except ValueError:
            seen.append(f"{path} (unrecognised)")
            continue
        if choice in ("auto", found):
            return path, found
        seen.append(f"{path} ({found})")
    wanted = "an mpiexec" if choice == "auto" else f"a {mpi.flavour(choice).title} mpiexec"
    looked = "; ".join(seen) if seen else "none found next to python or on PATH"
    raise WireError(f"no usable launcher: wanted {wanted}; candidates: {looked}", EXIT_UNAVAILABLE)


# ---- argv ------------------------------------------------------------------------------


def plain_alias(directory: str) -> str:
    """A plain path (see :mod:`mnp.build.mpi`) that is a symlink to ``directory``, inside a fresh
    private (0700) temporary directory so no one else can swap it."""
    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if mpi.is_plain_path(base) and os.path.isdir(base):
            try:
                private = tempfile.mkdtemp(prefix="mnp-wiring-", dir=base)
            except OSError:
                continue
            link = os.path.join(private, "w")
            os.symlink(directory, link)
            return link
    raise WireError(f"no plain temporary directory to alias {directory!r}", EXIT_UNAVAILABLE)


def build_argv(
    options: Options, layout: Layout, env: Mapping[str, str], mpiexec: str, flavour_name: str
) -> list[str]:
    """The launch argv for this job, aliasing the wiring directory if its path is not one
    the flavour's ssh launcher can take."""
    assert layout.wiring_dir is not None  # layout_from_env(need_wiring=True) checked it
    f = mpi.flavour(flavour_name)
    tasks = layout.tasks_per_node
    ranks = options.np if options.np is not None else len(layout.aliases) * tasks
    capacity = len(layout.aliases) * tasks
    if ranks > capacity:
        raise WireError(
            f"--np {ranks} exceeds {len(layout.aliases)} nodes × {tasks} tasks per node",
            EXIT_USAGE,
        )
    forward = [*layout.forward_env, *options.forward_env]
    missing = [n for n in forward if n not in env]
    if missing:
        print(f"launcher.wire: not forwarding unset {' '.join(missing)}", file=sys.stderr)
    command = list(options.command)
    if "/" not in command[0]:
        command[0] = shutil.which(command[0], path=env.get("PATH")) or command[0]

    def argv_in(wiring: str) -> list[str]:
        return mpi.launch_argv(
            flavour_name,
            mpiexec,
            ranks,
            tasks,
            os.path.join(wiring, f.hostfile_name),
            os.path.join(wiring, mpi.SSH_CONFIG_NAME),
            options.iface or layout.iface,
            command,
            [n for n in forward if n in env],
            ssh_wrapper=os.path.join(wiring, mpi.SSH_WRAPPER_NAME),
        )

    try:
        try:
            return argv_in(layout.wiring_dir)
        except mpi.UnsafePathError:
            return argv_in(plain_alias(layout.wiring_dir))
    except ValueError as e:
        raise WireError(str(e), EXIT_USAGE) from None


# ---- main ------------------------------------------------------------------------------


def wait_for_file(path: str, timeout: float, interval: float = 0.01) -> bool:
    """Whether ``path`` exists within ``timeout`` seconds (polled, interval growing to 0.2 s)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)
    return True


def _wait(layout: Layout, options: Options) -> None:
    timeout = options.ready_timeout
    started = time.monotonic()
    if options.ready_file is not None and not wait_for_file(options.ready_file, timeout):
        raise WireError(
            f"the other nodes of the job did not all start within {timeout:g} s "
            f"(no {options.ready_file})",
            EXIT_NOT_READY,
        )
    if not layout.others or not options.probe:
        return
    assert layout.wiring_dir is not None
    cfg = os.path.join(layout.wiring_dir, mpi.SSH_CONFIG_NAME)
    left = max(0.0, timeout - (time.monotonic() - started))
    not_ready = wait_until_ready(layout.others, ssh_probe(cfg), left)
    if not_ready:
        detail = "; ".join(f"{n}: {why}" for n, why in not_ready.items())
        raise WireError(
            f"{len(not_ready)} of {len(layout.others)} nodes never became ready within "
            f"{timeout:g} s ({' '.join(not_ready)}): {detail}",
            EXIT_NOT_READY,
        )
    print(
        f"launcher.wire: {len(layout.others)} nodes ready in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
    )


def run(options: Options, env: Mapping[str, str]) -> int:
    """Do the work of :func:`main`; returns only for ``--dry-run`` (or raises WireError)."""
    no_mpi = options.mpi == "none"
    # Without MPI on one node there is nothing to reach, so no wiring is needed.
    one_node = len(env.get(ENV_NODE_ALIASES, "").split()) == 1
    layout = layout_from_env(env, need_wiring=not (no_mpi and one_node))
    if no_mpi:
        if options.dry_run:
            print("\n".join(options.command))
            return 0
        _wait(layout, options)
        sys.stdout.flush()
        try:
            os.execvp(options.command[0], list(options.command))
        except OSError as e:
            raise WireError(f"cannot run {options.command[0]!r}: {e}", EXIT_CANNOT_EXEC) from None
    mpiexec, flavour_name = resolve_launcher(
        options.mpi, options.mpiexec, launcher_candidates(sys.executable, env.get("PATH", ""))
    )
    argv = build_argv(options, layout, env, mpiexec, flavour_name)
    if options.dry_run:
        print("\n".join(argv))
        return 0
    _wait(layout, options)
    exec_env = dict(env)
    for k, v in mpi.flavour(flavour_name).fixed_env.items():
        exec_env.setdefault(k, v)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, exec_env)
    except OSError as e:
        raise WireError(f"cannot run {argv[0]!r}: {e}", EXIT_UNAVAILABLE) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exec MPI (never returns then) or return an exit code."""
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
        return run(options, os.environ)
    except WireError as e:
        if str(e):
            print(f"launcher.wire: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
