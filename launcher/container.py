"""One attempt's Docker container on a node: create, start, stream logs, wait, stop, remove.

:class:`ContainerAttempt` offers the interface of :class:`launcher.process.AttemptProcess`
(``start``, ``kill``, ``kill_now``, ``read_logs``, ``wait``, ``close``, ``running``,
``workdir``, ``assignment``) with the same event contract, so the agent picks one or the
other by ``assignment.container`` in one place. It drives a real engine through the docker
SDK (:mod:`launcher.engine`; imported on first use only).

Every engine call runs on the :class:`~launcher.engine.Engine`'s thread pool, never on the
loop; each running container has one more thread that follows its output (``attach`` with
``logs``, so nothing written before the attach is lost) and then waits for its exit. Output
is buffered and turned into ``log`` events by :meth:`ContainerAttempt.read_logs` on the
loop, like the process runtime's file tails.

Containers use the host's network (MNP jobs reach each other's SSH endpoints and MPI ports
on the node addresses), run with the attempt's working directory bind-mounted at
``/mnp/work`` (their working directory), and carry mnp's labels (job, attempt, node id, node
root), by which a restarted agent finds the containers its predecessor left
(:meth:`~launcher.engine.Engine.remove_orphans`). A container is removed once its exit has
been seen, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from launcher.accounts import Account
from launcher.attempt import (
    START_FAILED_PREFIX,
    EventSink,
    StandIn,
    attempt_dir_for,
    attempt_event,
    make_attempt_dir,
    open_outputs,
    script_command,
    script_path_for,
    workdir_for,
    write_script,
)
from launcher.engine import (
    CONTAINER_WORKDIR,
    Engine,
    EngineError,
    container_name,
    explain,
    host_config,
)
from launcher.logs import OutputBuffer
from launcher.stopping import Stopping
from mnp.spec.containers import ContainerRun, Mount
from mnp.spec.protocol import PYTHON_PLACEHOLDER, Assignment, EventKind

log = logging.getLogger("launcher.container")

SCRIPT_IN_CONTAINER = "/mnp/script"
"""Where an attempt's batch script appears (read-only) in its container."""
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
OOM_EXIT_CODE = 128 + 9
"""What a container killed by the kernel's OOM killer (SIGKILL) exits with."""
PULL_FAILED_PREFIX = "CannotPullContainerError"
KILLED_REASON = "Killed"
"""The reason of a container killed (:meth:`ContainerAttempt.kill_now`) without a stop."""
LIB_DIR = "/opt/mnp/lib"
"""Where the node's ``launcher`` and ``mnp`` packages appear (read-only) in the container of
an MNP node, so the main node can run ``launcher.wire`` with the image's own Python."""
IMAGE_PYTHON = "python3"
"""The Python an MNP image provides (>= 3.10) on its ``PATH``."""
_BOOT = (
    "import runpy, sys; sys.path.insert(0, {lib!r}); sys.argv[0] = {module!r}; "
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
)


def without_image(
    assignment: Assignment, engine: Callable[[], Engine]
) -> tuple[Assignment, StandIn | None]:
    """The assignment as this node runs it under its environment's image policy
    (:mod:`mnp.build.images`), and the stand-in when that is a plain process instead of the
    image (None: unchanged, the engine runs it, or it names no image).

    ``process`` never asks the engine; ``auto`` asks ``engine()`` whether it is usable
    (:meth:`~launcher.engine.Engine.problem`, which never waits on the loop) and keeps the
    container when it is. The process assignment has no container, so everything after
    (accounts, the node's network, the multi-node wiring) is a process's: the job's own
    account runs it (an image's ``user`` names an account of the image's), and
    ``entrypoint`` goes before the command, ``command`` stands in for an empty one (not for
    an MNP node's, which is the node's own launcher), ``dir`` is the working directory
    unless the job names one. Resource limits and mounts of the container do not apply.
    """
    run = assignment.container
    without = run.without_engine if run is not None else None
    if run is None or without is None:
        return assignment, None
    why = f"imagePolicy {without.policy}"
    if without.policy != "process":
        problem = engine().problem()
        if problem is None:
            return assignment, None
        why = f"{why}: {problem}"
    command = list(assignment.command)
    if assignment.wiring is None:
        command = [*without.entrypoint, *(command or without.command)]
    workdir = assignment.workdir or without.directory
    plain = replace(assignment, container=None, command=command, workdir=workdir)
    return plain, StandIn(run.image, why, without.path)


def in_container(assignment: Assignment) -> Assignment:
    """The assignment of an MNP node with its command made runnable inside the image.

    ``@MNP_PYTHON@ -m <module> args…`` (the main node's ``launcher.wire``) becomes the image's
    ``python3`` running that module from :data:`LIB_DIR`, where the node's own ``launcher``
    and ``mnp`` packages are mounted read-only. A node that only holds (serves SSH) gets the
    engine's init process, so its ``sleep infinity`` ends at the first SIGTERM instead of
    lasting the whole grace period (PID 1 ignores signals it has no handler for). Other
    assignments are returned unchanged.
    """
    run, cmd, wiring = assignment.container, assignment.command, assignment.wiring
    if run is None or wiring is None:
        return assignment
    pkgs = Path(__file__).resolve().parent.parent
    mounts = tuple(Mount(f"{LIB_DIR}/{p}", str(pkgs / p), True) for p in ("launcher", "mnp"))
    if len(cmd) >= 3 and cmd[0] == PYTHON_PLACEHOLDER and cmd[1] == "-m":
        boot = _BOOT.format(lib=LIB_DIR, module=cmd[2])
        cmd = [IMAGE_PYTHON, "-c", boot, *cmd[3:]]
    run = replace(run, mounts=run.mounts + mounts, init=run.init or wiring.hold)
    return replace(assignment, command=cmd, container=run)


class ContainerAttempt:
    """The container of one attempt, from start to removal.

    Contract (as :class:`launcher.process.AttemptProcess`): after :meth:`start`, the sink
    receives either one ``start_failed`` event (reason ``CannotPullContainerError: …`` when
    the image is neither present nor pullable, else ``CannotStartContainerError: …``), or one
    ``started``, any number of ``log`` events and exactly one ``exited`` (reason: the stop's,
    ``Timeout``, or :data:`OOM_REASON` when the kernel killed it for memory). ``exited`` is
    sent once the container has been removed. Methods must be called on the loop's thread.
    """

    def __init__(
        self,
        assignment: Assignment,
        root: Path,
        sink: EventSink,
        *,
        engine: Engine,
        account: Account | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``account``: the attempt's switched account (:func:`launcher.accounts.account_for`).
        A container without a ``user`` of its own then runs as ``--user <uid>:<gid>`` of it,
        and the attempt's directory, script and output files are that account's; a
        container's own ``user`` is kept as given."""
        if assignment.container is None:
            raise ValueError("ContainerAttempt needs an assignment with a container")
        self.assignment = assignment
        self.account = account
        self.run: ContainerRun = assignment.container
        if account is not None and self.run.user is None:
            self.run = replace(self.run, user=f"{account.uid}:{account.gid}")
        self.attempt_id = assignment.attempt_id
        self.workdir = workdir_for(assignment, root)
        self.attempt_dir = attempt_dir_for(assignment, root)
        self.script_path = script_path_for(assignment, root)
        """The batch script on the node (mounted at :data:`SCRIPT_IN_CONTAINER`), if any."""
        self._outputs: list[int] = []
        """The job's own output files (``stdout_path``/``stderr_path``), written as the
        container's output arrives: one descriptor when both streams share a file."""
        self.name = container_name(engine.node_id, assignment.attempt_id)
        self.container_id: str | None = None
        self.pid: int | None = None
        """Always None: the container's processes belong to the engine (``started`` has none)."""
        self.exit_code: int | None = None
        self._engine = engine
        self._root = root
        self._sink = sink
        self._loop = loop or asyncio.get_running_loop()
        self._finished: asyncio.Future[int | None] = self._loop.create_future()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        """Signals and the exit's handling in flight (referenced until done)."""
        self._output: Any = ()
        """The attached output stream: ``(stdout bytes | None, stderr bytes | None)`` pairs."""
        # signals wait until the container has started (see Stopping.ready)
        self._stopping = Stopping(
            self._loop, self._signal, lambda: self.running, assignment.kill_grace_seconds
        )
        self._buffer = OutputBuffer()

    @property
    def running(self) -> bool:
        """Started (or starting) and not yet seen to exit."""
        return self._task is not None and self.exit_code is None and not self._finished.done()

    async def wait(self) -> int | None:
        """The exit code once the container has exited and is removed; None if it never
        started."""
        return await asyncio.shield(self._finished)

    def start(self) -> bool:
        """Begin creating and starting the container; events follow on the loop. Call once."""
        self._task = self._loop.create_task(self._run())
        return True

    def kill(self, reason: str, grace: float | None = None) -> None:
        """SIGTERM the container now, SIGKILL it after ``grace`` seconds (default the
        assignment's) if it still runs. The first stop's reason is reported; a later call can
        only bring the SIGKILL forward. A stop before the container started applies once it
        has."""
        self._stopping.stop(reason, grace)

    def kill_now(self) -> None:
        """SIGKILL the container (its exit is then reported as usual, with reason
        :data:`KILLED_REASON` unless a stop came before)."""
        self._stopping.kill_now(KILLED_REASON)

    def read_logs(self) -> None:
        """Emit ``log`` events for the output received since the last call."""
        self._drain(final=False)

    def close(self) -> None:
        """Remove the container (force) without emitting events; blocks. Idempotent."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._stopping.cancel()
        if self._task is not None and self.exit_code is None:
            with contextlib.suppress(Exception):
                self._engine.api().remove_container(self.name, force=True, v=True)
        self._release()

    # --- the container's life, on the loop -----------------------------------------------

    async def _run(self) -> None:
        try:
            await self._create_and_start()
        except Exception as e:  # whatever went wrong, the attempt reports it
            if not isinstance(e, _StartFailed):
                log.exception("starting container %s failed", self.name)
                e = _StartFailed(f"{START_FAILED_PREFIX}: {explain(e)}")
            with contextlib.suppress(EngineError):
                await self._remove()
            self._release()
            self._emit("start_failed", reason=str(e))
            self._finished.set_result(None)
            return
        self._emit("started", pid=self.pid)
        self._stopping.ready(self.assignment.timeout_seconds)
        threading.Thread(target=self._follow, name=f"logs-{self.name}", daemon=True).start()

    async def _create_and_start(self) -> None:
        """Create, attach to and start the container: four engine calls when all goes well
        (a missing image costs a pull and another create; a leftover of the same name, a
        removal and another create)."""
        e = self._engine
        try:
            api = await e.call(e.api)
            a = self.assignment
            if self.account is None:
                self.workdir.mkdir(parents=True, exist_ok=True)
            elif a.workdir is None:  # a switched job's own named workdir must exist
                make_attempt_dir(a, self._root, self.account)
            if a.stdout_path is not None:
                self._outputs = open_outputs(a, self.attempt_dir, self.account)
            if a.script is not None:
                write_script(a, self.script_path, self.account)
        except (EngineError, OSError) as exc:
            raise _StartFailed(f"{START_FAILED_PREFIX}: {exc}") from exc
        from docker.errors import DockerException, ImageNotFound

        try:
            try:
                created = await self._create(api)
            except ImageNotFound:
                try:
                    await e.call(api.pull, self.run.image)
                    created = await self._create(api)
                except DockerException as exc:  # ImageNotFound too: the pull got nothing
                    raise _StartFailed(f"{PULL_FAILED_PREFIX}: {explain(exc)}") from exc
            self.container_id = str(created["Id"])
            # Attach before starting, as ``docker run`` does: an attach to a container that
            # has already exited would wait for a start that never comes.
            self._output = await e.call(
                api.attach,
                self.container_id,
                stdout=True,
                stderr=True,
                stream=True,
                logs=True,
                demux=True,
            )
            await e.call(api.start, self.container_id)
        except DockerException as exc:
            raise _StartFailed(f"{START_FAILED_PREFIX}: {explain(exc)}") from exc

    async def _create(self, api: Any) -> Any:
        """``create_container``; a container of the same name (left by an earlier agent of
        this node) is removed first and the create tried once more."""
        from docker.errors import APIError

        e, a, run = self._engine, self.assignment, self.run
        command = list(a.command)
        if a.script is not None:
            command = script_command(a, SCRIPT_IN_CONTAINER)
            script = Mount(SCRIPT_IN_CONTAINER, str(self.script_path), True)
            run = replace(run, mounts=(*run.mounts, script))

        async def create() -> Any:
            return await e.call(
                api.create_container,
                run.image,
                command=command or None,
                environment=dict(a.environment),
                user=run.user or "",
                working_dir=str(CONTAINER_WORKDIR),
                labels=e.labels(a),
                name=self.name,
                host_config=host_config(api, run, self.workdir, share_host=self._shares_host(a)),
                detach=True,
            )

        try:
            return await create()
        except APIError as exc:
            if exc.status_code != 409:  # 409 Conflict: the name is taken
                raise
        await e.call(api.remove_container, self.name, force=True, v=True)
        return await create()

    def _shares_host(self, a: Assignment) -> bool:
        """MNP nodes on loopback addresses are fake nodes of one machine (see host_config)."""
        return a.wiring is not None and self._engine.address.startswith("127.")

    def _follow(self) -> None:
        """Thread: copy the container's output into the buffers, then wait for its exit."""
        api, cid = self._engine.api(), self.container_id
        code, oom = 255, False
        try:
            for out, err in self._output:
                self._buffer.append(out, err)
                if self._outputs:
                    _write_all(self._outputs[0], out)
                    _write_all(self._outputs[-1], err)
            code = int(api.wait(cid)["StatusCode"])
            if code == OOM_EXIT_CODE:  # the OOM killer sends SIGKILL; only then ask why
                oom = bool(api.inspect_container(cid)["State"].get("OOMKilled"))
        except Exception:
            log.exception("following container %s failed", self.name)
        with contextlib.suppress(RuntimeError):  # the loop is closed: close() cleans up
            self._loop.call_soon_threadsafe(self._on_exit, code, oom)

    def _on_exit(self, code: int, oom: bool) -> None:
        self._spawn(self._exited(code, oom))

    async def _exited(self, code: int, oom: bool) -> None:
        self._stopping.cancel()
        self._drain(final=True)
        with contextlib.suppress(EngineError):
            await self._remove()
        self._release()
        self.exit_code = code
        reason = self._stopping.reason or (OOM_REASON if oom else None)
        self._emit("exited", exit_code=code, timed_out=self._stopping.timed_out, reason=reason)
        if not self._finished.done():
            self._finished.set_result(code)

    def _release(self) -> None:
        """Close the job's output files and remove its script (the container has gone)."""
        for fd in self._outputs:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._outputs = []
        if self.assignment.script is not None:
            with contextlib.suppress(OSError):
                self.script_path.unlink()

    async def _remove(self) -> None:
        e = self._engine
        try:
            api = await e.call(e.api)
            await e.call(api.remove_container, self.name, force=True, v=True)
        except EngineError:
            raise
        except Exception as exc:  # NotFound: it never got created
            if "No such container" not in str(exc):
                log.warning("removing container %s: %s", self.name, explain(exc))

    def _signal(self, sig: signal.Signals) -> None:
        async def send() -> None:
            e = self._engine
            try:
                await e.call(e.api().kill, self.name, signal=sig.name)
            except Exception as exc:  # not running any more: its exit is on the way
                log.debug("signalling %s with %s: %s", self.name, sig, explain(exc))

        self._spawn(send())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drain(self, final: bool) -> None:
        for stream, offset, text in self._buffer.drain(final):
            self._emit("log", stream=stream, offset=offset, data=text)

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        self._sink(attempt_event(self.attempt_id, kind, **fields))


class _StartFailed(Exception):
    """The attempt could not start; the message is the event's reason."""


def _write_all(fd: int, data: bytes | None) -> None:
    """Append ``data`` to a job's output file; a full disk loses output, not the attempt."""
    view = memoryview(data or b"")
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        log.warning("writing the job's output file: %s", exc)
