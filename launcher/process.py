"""One attempt's OS process on a node: start, exit watch, kill, log tailing.

No HTTP here. The timeout and the SIGTERM/SIGKILL escalation are :mod:`launcher.stopping`'s,
the attempt's directories, files and events :mod:`launcher.attempt`'s, the log decoding
:mod:`launcher.logs`'. An :class:`AttemptProcess` turns what happens to its process into
:class:`mnp.spec.protocol.Event` values handed to a sink callback (with ``seq`` 0; the agent numbers
them). Everything runs on one asyncio loop, on the loop's thread: exits are noticed through a
pidfd registered with ``loop.add_reader`` (no child watcher, no thread per child), timers are
``loop.call_later`` handles. Linux only (``pidfd_open`` needs kernel 5.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launcher.accounts import Account
from launcher.attempt import (
    NODE_ROOT_ENV,
    START_FAILED_PREFIX,
    EventSink,
    StandIn,
    attempt_dir_for,
    attempt_event,
    exit_code_of,
    install_srun,
    make_attempt_dir,
    open_outputs,
    script_command,
    script_path_for,
    workdir_for,
    write_script,
)
from launcher.logs import STREAMS, TICK_MAX_CHUNKS, LogTail
from launcher.netns import View, spawn_args
from launcher.pgroups import signal_group
from launcher.spares import Spares
from launcher.stopping import Stopping
from mnp.build.images import IMAGE_TAG_PREFIX
from mnp.spec.protocol import Assignment, EventKind


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
        account: Account | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        netns: str | None = None,
        view: View | None = None,
        stand_in: StandIn | None = None,
        spares: Spares | None = None,
    ) -> None:
        """``env`` is the base environment; ``assignment.environment`` is laid over it.

        ``stand_in``: the attempt runs in place of its image (the image policy,
        :func:`launcher.container.without_image`): its output starts with a line saying so,
        its ``PATH`` starts with the mapping's directories, and its exit carries
        :attr:`~launcher.attempt.StandIn.reason` when no stop or timeout gives another.

        ``netns``: run in that network namespace of the node's (:func:`launcher.netns.spawn_args`),
        seeing the node as ``view`` has it (private ``/tmp``, ``ssh_config``, CPUs).

        ``account`` (see :func:`launcher.accounts.account_for`): run as that account, with
        its ``HOME``/``USER``/``LOGNAME``, groups and umask 077; the attempt's directory,
        logs, script and ``srun`` are then its own, and output files it names are opened
        with its rights. None: run as the agent.

        ``spares``: where the attempt's directory and logs come from when it has some (see
        :mod:`launcher.spares`; an attempt run as the agent only).
        """
        self.assignment = assignment
        self.account = account
        self.netns = netns
        self.view = view
        self.stand_in = stand_in
        self.spares = spares
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
        self._stopping = Stopping(
            self._loop, self._signal, self._alive, assignment.kill_grace_seconds
        )

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
                raise ValueError(_no_command(self.stand_in))
            user = self.account
            make_attempt_dir(a, self._root, user)  # first: it may be the workdir
            if user is None and a.workdir:  # a switched job's own must exist: root makes none
                self.workdir.mkdir(parents=True, exist_ok=True)
            fds = open_outputs(a, self.attempt_dir, user, self.spares)
            if self.stand_in is not None:  # before the command's: the log's first line
                os.write(fds[0], self.stand_in.line.encode())
            command, switch = spawn_args(self._command(), self.netns, user, self.view)
            env = {**self._env, **(user.environment() if user else {}), **a.environment}
            env[NODE_ROOT_ENV] = str(self._root)
            if self.stand_in is not None and self.stand_in.path:
                env["PATH"] = ":".join([*self.stand_in.path, env.get("PATH", "")])
            if a.script is not None:  # a batch script's srun lines start the job's tasks
                env["PATH"] = f"{install_srun(self.attempt_dir, user)}:{env.get('PATH', '')}"
            if a.timeout_seconds is not None:  # Slurm's; srun --signal counts back from it
                env["SLURM_JOB_END_TIME"] = str(int(time.time() + a.timeout_seconds))
            found = None if switch else EXECUTABLES.find(command[0], env.get("PATH"))
            popen = _spawn(command, found, self.workdir, env, fds, switch)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            for fd in fds:
                os.close(fd)
            self._emit("start_failed", reason=f"{START_FAILED_PREFIX}: {exc}")
            self._finished.set_result(None)
            return False
        self._popen = popen
        self.pid = popen.pid
        self._tails = [LogTail(fd, s) for fd, s in zip(fds, STREAMS, strict=False)]
        # A pidfd of an exited-but-unreaped child is readable at once, so no exit is missed.
        self._pidfd = os.pidfd_open(popen.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)
        self._stopping.ready(a.timeout_seconds)
        self._emit("started", pid=popen.pid)
        return True

    def kill(self, reason: str, grace: float | None = None) -> None:
        """SIGTERM the process group now, SIGKILL it after ``grace`` seconds if still alive.

        ``grace`` defaults to the assignment's ``kill_grace_seconds``. The first stop's reason
        is the one reported; a later call can only bring the SIGKILL forward. Ignored when
        the process is not running.
        """
        self._stopping.stop(reason, grace)

    def kill_now(self) -> None:
        """SIGKILL the process group (the exit is then reported as usual, with the reason of
        an earlier :meth:`kill` if any)."""
        self._stopping.kill_now()

    def read_logs(self) -> None:
        """Emit ``log`` events for output written since the last call (bounded per call)."""
        if self.running:
            self._drain(TICK_MAX_CHUNKS, final=False)

    def close(self) -> None:
        """Kill, reap and release everything without emitting events; idempotent.

        For teardown when the loop may be gone (tests, crashes); blocks until the kill lands.
        """
        if self._popen is not None and self.exit_code is None and self.pid is not None:
            signal_group(self.pid, signal.SIGKILL)
            self.exit_code = exit_code_of(self._popen.wait())
        self._release()

    def _alive(self) -> bool:
        return self.running and self.pid is not None

    def _signal(self, sig: signal.Signals) -> None:
        if self.pid is not None:
            signal_group(self.pid, sig)

    def _on_exit(self) -> None:
        if self._popen is None or self.pid is None or self.exit_code is not None:
            return
        # The leader is a zombie until reaped, so its pgid still names only its own group:
        # kill what it left behind before reaping.
        signal_group(self.pid, signal.SIGKILL)
        self.exit_code = exit_code_of(self._popen.wait())
        self._drain(None, final=True)
        self._release()
        self._emit(
            "exited",
            exit_code=self.exit_code,
            timed_out=self._stopping.timed_out,
            reason=self._stopping.reason or (self.stand_in.reason if self.stand_in else None),
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
        write_script(a, self.script_path, self.account)
        return script_command(a, str(self.script_path))

    @property
    def script_path(self) -> Path:
        return script_path_for(self.assignment, self._root)

    def _release(self) -> None:
        if self.assignment.script is not None:
            with contextlib.suppress(OSError):
                self.script_path.unlink()
            shutil.rmtree(self.attempt_dir / "bin", ignore_errors=True)
        self._stopping.cancel()
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


EXECUTABLE_TTL_SECONDS = 1.0
"""How long a found executable is used before ``PATH`` is searched again (a tool installed
earlier on the path is picked up within this)."""
EXECUTABLES_KEPT = 1024


class Executables:
    """Where a command named without a ``/`` was found on a ``PATH``, remembered for
    :data:`EXECUTABLE_TTL_SECONDS`, as a shell hashes commands: Popen otherwise joins the
    name to every ``PATH`` entry in Python, a tenth of the agent's CPU for a trivial job.
    Only for attempts run as the agent itself (:func:`shutil.which` looks with its rights)
    and a ``PATH`` of absolute folders; a path that has gone meanwhile is looked up again
    (:func:`_spawn`)."""

    def __init__(self, ttl: float = EXECUTABLE_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._found: dict[tuple[str, str | None], tuple[str, float]] = {}

    def find(self, name: str, path: str | None) -> str | None:
        """The executable ``name`` runs on ``path`` (None: the default path); None when
        ``name`` holds a ``/`` or is not found (Popen then says why, as before)."""
        if not name or "/" in name:
            return None
        search = path if path is not None else os.defpath
        if not all(d.startswith("/") for d in search.split(os.pathsep)):
            return None  # a relative entry is the job's working directory, not the agent's
        key = (name, path)
        now = time.monotonic()
        hit = self._found.get(key)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        if len(self._found) >= EXECUTABLES_KEPT:
            self._found.clear()
        found = shutil.which(name, path=search)
        if found is None:
            self._found.pop(key, None)
            return None
        self._found[key] = (found, now)  # the folders are absolute: so is the path
        return found

    def forget(self, name: str, path: str | None) -> None:
        self._found.pop((name, path), None)


EXECUTABLES = Executables()
SEARCH_GOES_ON = frozenset({errno.ENOENT, errno.EACCES, errno.ENOTDIR, errno.ENOEXEC})
"""Errors of one ``PATH`` entry after which Popen's own search tries the next."""


def _spawn(
    command: list[str],
    found: str | None,
    workdir: Path,
    env: dict[str, str],
    fds: list[int],
    switch: dict[str, Any],
) -> subprocess.Popen[bytes]:
    """Start ``command`` (from ``found`` when given: see :class:`Executables`)."""
    try:
        return subprocess.Popen(
            command,
            executable=found,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fds[0],
            stderr=fds[-1],
            # Own session (so a kill reaches the whole group). A preexec_fn (Python code in
            # the child) forces fork() over vfork(), ~5x the cost per start: only an attempt
            # with its own view of the node has one (launcher.mountns.preexec).
            # Processes a killed agent leaves behind carry MNP_NODE_ROOT, by which the
            # provider sweeps them up.
            start_new_session=True,
            # Switching ids costs vfork (a full fork): only switched attempts pay it.
            **switch,
        )
    except OSError as e:
        if found is None or e.errno not in SEARCH_GOES_ON:
            raise
        EXECUTABLES.forget(command[0], env.get("PATH"))  # gone meanwhile: search again
        return _spawn(command, None, workdir, env, fds, switch)


def _no_command(stand_in: StandIn | None) -> str:
    """Why an attempt with nothing to run cannot start (the image's own command is not
    known without the image: a mapping must give one)."""
    if stand_in is None:
        return "empty command"
    return (
        f"image {stand_in.image} not used ({stand_in.why}) and the job gives no command: "
        f"give one, or map the image to one (tag {IMAGE_TAG_PREFIX}{stand_in.image} = "
        "command=… or entrypoint=…)"
    )
