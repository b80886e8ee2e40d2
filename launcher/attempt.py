"""What both runtimes of an attempt share: its places on the node, its script, its events.

:mod:`launcher.process` and :mod:`launcher.container` run an attempt differently but lay it
out alike: the same directories under the agent's root, the same output files, the same batch
script handling and the same :class:`mnp.spec.protocol.Event` values.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from launcher.accounts import TRAVERSE_MODE, Account, job_python, open_as, package_path
from launcher.logs import Stream
from launcher.spares import Spares
from mnp.build.outputs import safe_file_name
from mnp.spec.protocol import SCRIPT_PLACEHOLDER, Assignment, Event, EventKind

EventSink = Callable[[Event], None]

START_FAILED_PREFIX = "CannotStartContainerError"
NODE_ROOT_ENV = "MNP_NODE_ROOT"
"""Set in every job's environment to the agent's root: marks the node's processes."""
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
"""The agent's own folders and files (its user's only; see :func:`make_private_dir`)."""


@dataclass(frozen=True, slots=True)
class StandIn:
    """An attempt whose image is not used: the node runs its command as a plain process
    (:func:`launcher.container.without_image`). ``why`` names the policy (and, under
    ``auto``, the engine's trouble); ``path`` goes before the process's ``PATH``."""

    image: str
    why: str
    path: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        """The first line of the job's output: the log says how it ran before anything."""
        return f"mnp: running as a plain process, without the image {self.image} ({self.why})\n"

    @property
    def reason(self) -> str:
        """The attempt's reason when nothing else (a stop, a timeout) ended it."""
        return f"Ran as a process: image {self.image} not used ({self.why})"


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the unit of ``Event.time_ms``."""
    return time.time_ns() // 1_000_000


def exit_code_of(returncode: int) -> int:
    """Shell convention: the exit status, or 128+N for a process killed by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


def attempt_dir_for(assignment: Assignment, root: Path) -> Path:
    """The agent's own directory for one attempt, ``<root>/jobs/<safe job id>.<attempt>``:
    its logs and (for a process) its multi-node wiring, whatever the working directory is.
    One level, not a folder per job holding one per attempt: each directory made and removed
    costs about as much as spawning the job's process on ext4 (mounted with ``discard``)."""
    return _attempt_dir(root, assignment.job_id, assignment.attempt)


@functools.lru_cache(maxsize=256)
def _attempt_dir(root: Path, job_id: str, attempt: int) -> Path:
    """Remembered for the running attempts: every step of one asks for it again."""
    return root / "jobs" / f"{safe_file_name(job_id)}.{attempt}"


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each mode 0700 whatever the umask, and make
    ``path`` 0700 if it existed; returns it. The agent's folders (``jobs/``, an attempt's
    directory with its outputs and wiring, ``scripts/``) are its user's only: they hold
    other jobs' outputs and private keys."""
    missing: list[Path] = []
    p = path
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # made meanwhile (``jobs/``, by another attempt)
            pass
    os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask
    for d in missing[1:]:
        os.chmod(d, PRIVATE_DIR_MODE)
    return path


def make_attempt_dir(assignment: Assignment, root: Path, account: Account | None) -> Path:
    """Create the attempt's directory (:func:`attempt_dir_for`, 0700); returns it.

    With ``account`` (a switched attempt) it is that account's, and the directories between
    ``root`` and it (``jobs/`` and ``root``) become 0711 so the job can pass through them to its
    own files without listing anyone else's; the agent's files in ``root`` stay 0600.
    """
    path = make_private_dir(attempt_dir_for(assignment, root))
    if account is not None:
        account.give(path, PRIVATE_DIR_MODE)
        for above in (path.parent, root):
            os.chmod(above, TRAVERSE_MODE)
    return path


def workdir_for(assignment: Assignment, root: Path) -> Path:
    """``assignment.workdir``, else the attempt's own directory (:func:`attempt_dir_for`)."""
    if assignment.workdir:
        return Path(assignment.workdir)
    return attempt_dir_for(assignment, root)


def open_outputs(
    assignment: Assignment,
    directory: Path,
    account: Account | None = None,
    spares: Spares | None = None,
) -> list[int]:
    """File descriptors for the process's stdout and stderr: one when both go to one file.

    Without ``stdout_path`` they are ``stdout.log`` and ``stderr.log`` in ``directory``, mode
    0600 (the agent's copies, read into events for the head; never through a symlink); with
    it, the user's file(s), truncated as sbatch does (mode 0644 less the umask; a missing
    directory is made, as Slurm makes it). With ``account`` the logs are that account's, and
    the user's files (and directories) are made with that account's rights
    (:func:`launcher.accounts.open_as`, mode 0600), never root's. Without, the logs are files
    taken from ``spares`` when it has some. The caller owns (closes) them.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    if account is not None and assignment.stdout_path is not None:
        return open_as(account, [str(p) for p in _output_paths(assignment)])
    mode = 0o644
    if assignment.stdout_path is None:
        paths = [directory / "stdout.log", directory / "stderr.log"]
        mode = PRIVATE_FILE_MODE
        flags |= os.O_NOFOLLOW  # the directory may be the job's own: no planted links
        if spares is not None and account is None:
            for path in paths:  # renamed over what is there; O_TRUNC empties it below
                spares.take_file(path)
    else:
        paths = _output_paths(assignment)
    fds: list[int] = []
    try:
        for path in paths:
            if assignment.stdout_path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            fds.append(os.open(path, flags, mode))
            if mode == PRIVATE_FILE_MODE:
                os.fchmod(fds[-1], mode)  # also a file an older agent left 0644
                if account is not None:
                    os.fchown(fds[-1], account.uid, account.gid)
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _output_paths(assignment: Assignment) -> list[Path]:
    """The job's own output file(s): one when stderr goes to stdout's file."""
    if assignment.stderr_path in (None, assignment.stdout_path):
        return [Path(assignment.stdout_path or "")]
    return [Path(assignment.stdout_path or ""), Path(assignment.stderr_path or "")]


def attempt_event(
    attempt_id: str,
    kind: EventKind,
    *,
    pid: int | None = None,
    exit_code: int | None = None,
    timed_out: bool = False,
    reason: str | None = None,
    stream: Stream | None = None,
    offset: int = 0,
    data: str = "",
) -> Event:
    """An event of one attempt, stamped now (``seq`` 0: the agent numbers events)."""
    return Event(
        attempt_id=attempt_id,
        kind=kind,
        time_ms=now_ms(),
        pid=pid,
        exit_code=exit_code,
        timed_out=timed_out,
        reason=reason,
        stream=stream,
        offset=offset,
        data=data,
    )


SLURM_VERBS = ("sbatch", "squeue", "scancel", "sacct", "scontrol", "sinfo", "salloc")
"""Slurm's commands a batch script finds beside ``srun``: each ``mnp <verb>``, reaching the
head as any mnp client does (``MNP_URL``/``MNP_TOKEN``/``MNP_HOME`` in the job's
environment); ``scontrol show hostnames`` needs no head."""
_MNP_VERB = "import sys; sys.path.insert(0, sys.argv.pop(1)); from mnp.cli.main import main; main()"


def install_srun(attempt_dir: Path, account: Account | None = None) -> Path:
    """Write ``<attempt_dir>/bin/srun`` (:mod:`launcher.srun` under this Python) and the
    :data:`SLURM_VERBS` beside it, and return that ``bin`` directory, for the front of a
    batch script's ``PATH`` (``account``'s, 0700, when the attempt is switched to it)."""
    bin_dir = make_private_dir(attempt_dir / "bin")
    python = job_python(account)
    path = ""  # another Python than the agent's finds mnp's packages through PYTHONPATH
    if python != sys.executable:
        path = f'PYTHONPATH={shlex.quote(package_path())}"${{PYTHONPATH:+:$PYTHONPATH}}" '
    root = shlex.quote(package_path())
    shims = {"srun": f'{path}exec {shlex.quote(python)} -m launcher.srun "$@"'}
    for verb in SLURM_VERBS:  # this node's mnp first on sys.path, whatever the job's cwd
        shims[verb] = f'exec {shlex.quote(python)} -c {shlex.quote(_MNP_VERB)} {root} {verb} "$@"'
    for name, line in shims.items():
        shim = bin_dir / name
        with contextlib.suppress(FileNotFoundError):
            shim.unlink()  # never write through what an earlier try left there
        fd = os.open(shim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"#!/bin/sh\n{line}\n")
        if account is None:
            shim.chmod(0o755)
        else:
            account.give(shim, 0o700)
    if account is not None:
        account.give(bin_dir, PRIVATE_DIR_MODE)
    return bin_dir


def script_path_for(assignment: Assignment, root: Path) -> Path:
    """Where the agent writes an attempt's batch script (private to the agent's user)."""
    return root / "scripts" / safe_file_name(assignment.attempt_id)


def write_script(assignment: Assignment, path: Path, account: Account | None = None) -> None:
    """Write ``assignment.script`` to ``path``, mode 0700 (its folder too); with ``account``
    the script is that account's and its folder (the agent's) 0711, passable, not listable."""
    make_private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a fresh file: never write through what was left there
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o700)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(assignment.script or "")
    if account is not None:
        os.chmod(path.parent, TRAVERSE_MODE)
        account.give(path, 0o700)


def script_command(assignment: Assignment, script: str) -> list[str]:
    """The command with the script at ``script``: in place of :data:`SCRIPT_PLACEHOLDER` if
    the command has one, else first, with the command as its arguments."""
    if SCRIPT_PLACEHOLDER in assignment.command:
        return [script if arg == SCRIPT_PLACEHOLDER else arg for arg in assignment.command]
    return [script, *assignment.command]
