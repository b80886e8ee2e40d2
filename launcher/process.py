"""One attempt's OS process on a node: start, exit watch, timeout and kill, log tailing.

No HTTP here. An :class:`AttemptProcess` turns what happens to its process into
:class:`mnp.spec.protocol.Event` values handed to a sink callback (with ``seq`` 0; the agent numbers
them). Everything runs on one asyncio loop, on the loop's thread: exits are noticed through a
pidfd registered with ``loop.add_reader`` (no child watcher, no thread per child), timers are
``loop.call_later`` handles. Linux only (``pidfd_open`` needs kernel 5.3).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from mnp.spec.protocol import SCRIPT_PLACEHOLDER, Assignment, Event, EventKind

Stream = Literal["stdout", "stderr"]
EventSink = Callable[[Event], None]

LOG_CHUNK_BYTES = 64 * 1024
"""Upper bound on the bytes one ``log`` event covers."""
TICK_MAX_CHUNKS = 16
"""Chunks read per stream per :meth:`AttemptProcess.read_logs` call while running (1 MiB), so
one chatty job cannot stall the loop; the rest is read on the next call or at exit."""
TIMEOUT_REASON = "Timeout"
START_FAILED_PREFIX = "CannotStartContainerError"

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
NODE_ROOT_ENV = "MNP_NODE_ROOT"
"""Set in every job's environment to the agent's root: marks the node's processes."""


def now_ms() -> int:
    """Wall-clock epoch milliseconds, the unit of ``Event.time_ms``."""
    return time.time_ns() // 1_000_000


def exit_code_of(returncode: int) -> int:
    """Shell convention: the exit status, or 128+N for a process killed by signal N."""
    return returncode if returncode >= 0 else 128 - returncode


def safe_job_dir_name(job_id: str) -> str:
    """``job_id`` with every char outside ``[A-Za-z0-9._-]`` replaced by ``_``.

    Never ``""``, ``"."`` or ``".."``, so the result is always one new path component.
    """
    safe = _UNSAFE_CHARS.sub("_", job_id)
    return safe if safe.strip(".") else "_" * max(1, len(safe))


def attempt_dir_for(assignment: Assignment, root: Path) -> Path:
    """The agent's own directory for one attempt, ``<root>/jobs/<safe job id>/<attempt>``:
    its logs and (for a process) its multi-node wiring, whatever the working directory is."""
    return root / "jobs" / safe_job_dir_name(assignment.job_id) / str(assignment.attempt)


def workdir_for(assignment: Assignment, root: Path) -> Path:
    """``assignment.workdir``, else the attempt's own directory (:func:`attempt_dir_for`)."""
    if assignment.workdir:
        return Path(assignment.workdir)
    return root / "jobs" / safe_job_dir_name(assignment.job_id) / str(assignment.attempt)


def open_outputs(assignment: Assignment, directory: Path) -> list[int]:
    """File descriptors for the process's stdout and stderr: one when both go to one file.

    Without ``stdout_path`` they are ``stdout.log`` and ``stderr.log`` in ``directory``; with
    it, the user's file(s), truncated as sbatch does (the directory must exist). The caller
    owns (closes) them.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    if assignment.stdout_path is None:
        paths = [directory / "stdout.log", directory / "stderr.log"]
    elif assignment.stderr_path in (None, assignment.stdout_path):
        paths = [Path(assignment.stdout_path)]
    else:
        paths = [Path(assignment.stdout_path), Path(assignment.stderr_path or "")]
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(path, flags, 0o644))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


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


def install_srun(attempt_dir: Path) -> Path:
    """Write ``<attempt_dir>/bin/srun`` (:mod:`launcher.srun` under this Python) and return
    that ``bin`` directory, for the front of a batch script's ``PATH``."""
    bin_dir = attempt_dir / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "srun"
    python = shlex.quote(sys.executable)
    shim.write_text(f'#!/bin/sh\nexec {python} -m launcher.srun "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return bin_dir


def script_path_for(assignment: Assignment, root: Path) -> Path:
    """Where the agent writes an attempt's batch script (private to the agent's user)."""
    return root / "scripts" / safe_job_dir_name(assignment.attempt_id)


def write_script(assignment: Assignment, path: Path) -> None:
    """Write ``assignment.script`` to ``path``, mode 0700."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o700)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(assignment.script or "")


def script_command(assignment: Assignment, script: str) -> list[str]:
    """The command with the script at ``script``: in place of :data:`SCRIPT_PLACEHOLDER` if
    the command has one, else first, with the command as its arguments."""
    if SCRIPT_PLACEHOLDER in assignment.command:
        return [script if arg == SCRIPT_PLACEHOLDER else arg for arg in assignment.command]
    return [script, *assignment.command]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)


class LogTail:
    """Reads what was appended to one log file since the previous call, as decoded text.

    Text is decoded with an incremental UTF-8 decoder (``errors="replace"``): bytes of a
    character split across reads are held back and come out with the next piece. Each
    returned ``(offset, text)`` says at which byte of the file ``text`` starts, so the pieces
    are contiguous: the next offset is ``offset + len(text.encode())`` unless invalid bytes
    were replaced. Each piece covers at most :data:`LOG_CHUNK_BYTES` bytes.
    """

    def __init__(self, fd: int, stream: Stream) -> None:
        self.stream: Stream = stream
        self.position = 0
        """Bytes of the file consumed so far (including held-back partial characters)."""
        self._fd = fd
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read(self, max_chunks: int | None = None, final: bool = False) -> list[tuple[int, str]]:
        """New text since the last call; ``final`` also flushes a trailing partial character.

        Reads at most ``max_chunks`` chunks (None: until end of file). Uses ``pread``, so the
        writer's file offset is never disturbed.
        """
        pieces: list[tuple[int, str]] = []
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            held = len(self._decoder.getstate()[0])
            want = LOG_CHUNK_BYTES - held
            data = os.pread(self._fd, want, self.position)
            if not data:
                break
            chunks += 1
            text = self._decoder.decode(data)
            if text:
                pieces.append((self.position - held, text))
            self.position += len(data)
            if len(data) < want:
                break
        if final:
            held = len(self._decoder.getstate()[0])
            text = self._decoder.decode(b"", final=True)
            if text:
                pieces.append((self.position - held, text))
        return pieces

    def close(self) -> None:
        """Close the file descriptor; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class AttemptProcess:
    """The process of one attempt, from start to exit.

    Contract: after :meth:`start`, the sink receives, in order, either one ``start_failed``
    event, or one ``started`` event, any number of ``log`` events, and exactly one ``exited``
    event (every byte of output is reported before ``exited``). All methods must be called on
    the loop's thread; none blocks for long.
    """

    def __init__(
        self,
        assignment: Assignment,
        root: Path,
        sink: EventSink,
        *,
        env: Mapping[str, str],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``env`` is the base environment; ``assignment.environment`` is laid over it."""
        self.assignment = assignment
        self.attempt_id = assignment.attempt_id
        self.workdir = workdir_for(assignment, root)
        """Where the command starts."""
        self.attempt_dir = attempt_dir_for(assignment, root)
        """The agent's own: the logs (unless the job names output files) and wiring."""
        self.pid: int | None = None
        self.exit_code: int | None = None
        """Set once the process has exited (see :func:`exit_code_of`)."""
        self._sink = sink
        self._env = env
        self._root = root
        self._loop = loop or asyncio.get_running_loop()
        self._finished: asyncio.Future[int | None] = self._loop.create_future()
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfd = -1
        self._tails: list[LogTail] = []
        self._timeout_handle: asyncio.TimerHandle | None = None
        self._escalate_handle: asyncio.TimerHandle | None = None
        self._escalate_at: float | None = None
        self._stop_reason: str | None = None
        self._timed_out = False

    @property
    def running(self) -> bool:
        """Started and not yet seen to exit."""
        return self._popen is not None and self.exit_code is None

    async def wait(self) -> int | None:
        """The exit code once the process has exited; None when it failed to start."""
        return await asyncio.shield(self._finished)

    def start(self) -> bool:
        """Create the workdir, open the logs, start the process; False if it could not start.

        Emits ``started`` (with the pid) or ``start_failed`` (reason
        ``"CannotStartContainerError: <error>"``) before returning. Call once.
        """
        a = self.assignment
        fds: list[int] = []
        try:
            if not a.command and a.script is None:
                raise ValueError("empty command")
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.attempt_dir.mkdir(parents=True, exist_ok=True)
            fds = open_outputs(a, self.attempt_dir)
            command = self._command()
            env = {**self._env, **a.environment, NODE_ROOT_ENV: str(self._root)}
            if a.script is not None:  # a batch script's srun lines start the job's tasks
                env["PATH"] = f"{install_srun(self.attempt_dir)}:{env.get('PATH', '')}"
            popen = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fds[0],
                stderr=fds[-1],
                # Own session (so a kill reaches the whole group), and no preexec_fn: Python
                # code in the child would force fork() over vfork(), ~5x the cost per start.
                # Processes a killed agent leaves behind carry MNP_NODE_ROOT, by which the
                # provider sweeps them up.
                start_new_session=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            for fd in fds:
                os.close(fd)
            self._emit("start_failed", reason=f"{START_FAILED_PREFIX}: {exc}")
            self._finished.set_result(None)
            return False
        self._popen = popen
        self.pid = popen.pid
        streams: tuple[Stream, Stream] = ("stdout", "stderr")
        self._tails = [LogTail(fd, s) for fd, s in zip(fds, streams, strict=False)]
        # A pidfd of an exited-but-unreaped child is readable at once, so no exit is missed.
        self._pidfd = os.pidfd_open(popen.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        if a.timeout_seconds is not None:
            self._timeout_handle = self._loop.call_later(a.timeout_seconds, self._on_timeout)
        self._emit("started", pid=popen.pid)
        return True

    def kill(self, reason: str, grace: float | None = None) -> None:
        """SIGTERM the process group now, SIGKILL it after ``grace`` seconds if still alive.

        ``grace`` defaults to the assignment's ``kill_grace_seconds``. The first stop's reason
        is the one reported; a later call can only bring the SIGKILL forward. Ignored when
        the process is not running.
        """
        if not self.running or self.pid is None:
            return
        if grace is None:
            grace = self.assignment.kill_grace_seconds
        deadline = self._loop.time() + max(0.0, grace)
        if self._stop_reason is None:
            self._stop_reason = reason
            _signal_group(self.pid, signal.SIGTERM)
        elif self._escalate_at is not None and deadline >= self._escalate_at:
            return
        if self._escalate_handle is not None:
            self._escalate_handle.cancel()
        self._escalate_at = deadline
        self._escalate_handle = self._loop.call_at(deadline, self.kill_now)

    def kill_now(self) -> None:
        """SIGKILL the process group (the exit is then reported as usual)."""
        if self.running and self.pid is not None:
            _signal_group(self.pid, signal.SIGKILL)

    def read_logs(self) -> None:
        """Emit ``log`` events for output written since the last call (bounded per call)."""
        if self.running:
            self._drain(TICK_MAX_CHUNKS, final=False)

    def close(self) -> None:
        """Kill, reap and release everything without emitting events; idempotent.

        For teardown when the loop may be gone (tests, crashes); blocks until the kill lands.
        """
        if self._popen is not None and self.exit_code is None and self.pid is not None:
            _signal_group(self.pid, signal.SIGKILL)
            self.exit_code = exit_code_of(self._popen.wait())
        self._release()

    def _on_timeout(self) -> None:
        self._timeout_handle = None
        if self.running and self._stop_reason is None:
            self._timed_out = True
            self.kill(TIMEOUT_REASON)

    def _on_exit(self) -> None:
        if self._popen is None or self.pid is None or self.exit_code is not None:
            return
        # The leader is a zombie until reaped, so its pgid still names only its own group:
        # kill what it left behind before reaping.
        _signal_group(self.pid, signal.SIGKILL)
        self.exit_code = exit_code_of(self._popen.wait())
        self._drain(None, final=True)
        self._release()
        self._emit(
            "exited",
            exit_code=self.exit_code,
            timed_out=self._timed_out,
            reason=self._stop_reason,
        )
        if not self._finished.done():
            self._finished.set_result(self.exit_code)

    def _drain(self, max_chunks: int | None, final: bool) -> None:
        for tail in self._tails:
            for offset, text in tail.read(max_chunks, final):
                self._emit("log", stream=tail.stream, offset=offset, data=text)

    def _command(self) -> list[str]:
        """The argv, with the batch script (if any) written out and in its place."""
        a = self.assignment
        if a.script is None:
            return list(a.command)
        write_script(a, self.script_path)
        return script_command(a, str(self.script_path))

    @property
    def script_path(self) -> Path:
        return script_path_for(self.assignment, self._root)

    def _release(self) -> None:
        if self.assignment.script is not None:
            with contextlib.suppress(OSError):
                self.script_path.unlink()
            shutil.rmtree(self.attempt_dir / "bin", ignore_errors=True)
        for handle in (self._timeout_handle, self._escalate_handle):
            if handle is not None:
                handle.cancel()
        self._timeout_handle = self._escalate_handle = None
        if self._pidfd >= 0:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        for tail in self._tails:
            tail.close()
        self._tails = []

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        self._sink(attempt_event(self.attempt_id, kind, **fields))
