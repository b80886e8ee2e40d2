"""``launcher.wire``'s inputs: its command line (:class:`Options`) and the job as the head
node described it in the environment (:class:`Layout`); constants and exit codes."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    hostfile_dir: str | None = None
    """A step's own hostfiles (``srun``: fewer nodes or other counts than the job's); the
    ranks then fill each host's slots in order, with no fixed count per node."""


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
        hostfile_dir=ns.hostfile_dir,
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
    p.add_argument(
        "--hostfile-dir", metavar="DIR",
        help="take the flavour's hostfile from DIR instead of the wiring (ranks fill its slots)",
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
