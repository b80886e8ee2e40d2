"""The attempts one node agent runs: starting them (process or container), stopping them,
and tidying up after each.

An :class:`Attempts` knows nothing of the head node: :class:`launcher.agent.Agent` hands it
assignments, kills and readiness from its polls, and tells it (:meth:`Attempts.ended`) when
an attempt's last event has passed through the agent's sink.

Not thread-safe: call everything on the agent's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.accounts import Account, AccountError, account_for, impassable
from launcher.attempt import (
    PRIVATE_DIR_MODE,
    START_FAILED_PREFIX,
    EventSink,
    attempt_dir_for,
    make_attempt_dir,
    make_private_dir,
    now_ms,
)
from launcher.container import ContainerAttempt, in_container, without_image
from launcher.credentials import CredentialServer
from launcher.engine import CONTAINER_WIRING, Engine, EngineError, container_name
from launcher.gangfiles import prepare, wiring_dir
from launcher.netns import View, tmp_dirs_named
from launcher.process import AttemptProcess
from launcher.spares import Spares
from mnp.spec.containers import Mount
from mnp.spec.protocol import Assignment, Event

if TYPE_CHECKING:
    from launcher.sshd import NodeSshServer

log = logging.getLogger("launcher.agent")

STOP_GRACE_CAP_SECONDS = 5.0
STOP_REASON = "Node agent stopped"
FINISHED_MEMORY = 100_000
"""How many finished attempt ids are remembered to ignore repeated assignments."""
RECONCILE_SECONDS = 10.0
"""How long a starting agent waits for the Docker engine to list its leftover containers."""

PRIVATE_TMP = ".mnp-tmp"
"""An attempt's own ``/tmp`` on a node with a namespace, inside its directory."""

RunningAttempt = AttemptProcess | ContainerAttempt
"""An attempt the agent runs: a plain process, or a Docker container when it names an image."""


class Attempts:
    """The running attempts of one node, by attempt id, and the ids of finished ones."""

    def __init__(
        self,
        root: Path,
        node_id: str,
        address: str,
        env: Mapping[str, str],
        sink: EventSink,
    ) -> None:
        """``env``: base environment of every job; ``sink`` receives every attempt's events
        (and must call :meth:`ended` for ``exited`` and ``start_failed``)."""
        self.ssh: NodeSshServer | None = None
        """The node's SSH server, which MNP attempts are let in through (None: no SSH)."""
        self.netns: str | None = None
        self.own_view = False
        """Whether process attempts get their own view of the node (private ``/tmp``, the
        gang's ``ssh_config``: :meth:`_view`): on namespace nodes and hosts' root agents."""
        """The node's network namespace, where its processes run (containers keep the
        machine's network); None: the machine's."""
        self.cpus: tuple[int, ...] = ()
        """The node's share of the machine's CPUs (:func:`launcher.netns.node_cpus`), which
        its attempts' processes are bound to on a node with a namespace; empty: all."""
        self._root = root
        self._node_id = node_id
        self._address = address
        self._env = env
        self._software = software_dirs(env)  # once: the agent's own environment
        self._spares = Spares(root)
        self._sink = sink
        self._running: dict[str, RunningAttempt] = {}
        self._finished: dict[str, None] = {}  # insertion-ordered set, bounded
        self._killed: set[str] = set()
        """Running attempts a Kill was applied to: the head repeats kills until it sees the
        exit; a repeat is ignored (the first stop's reason and grace stand)."""
        self._ready: set[str] = set()
        """Running main-node attempts told Ready (reported in every poll)."""
        self._engine: Engine | None = None
        self.credentials: CredentialServer | None = None
        """Serves each attempt its own AWS key (None: the jobs get none), where the node's
        processes run (on a namespace node: inside its namespace)."""
        self.head_url: Callable[[], str] = lambda: ""
        """The head's URL as the node's processes reach it (the jobs' AWS and mnp endpoints)."""
        self.machine_credentials: CredentialServer | None = None
        self.machine_head_url: Callable[[], str] = lambda: ""
        """The same on the machine's own network, where containers run (host networking);
        unset: the same as :attr:`credentials` / :attr:`head_url`."""

    def ids(self) -> list[str]:
        """The running attempts' ids."""
        return list(self._running)

    def ready_ids(self) -> list[str]:
        """The running attempts a Ready was applied to."""
        return list(self._ready)

    def engine(self) -> Engine:
        """The node's Docker engine client (made on first use: only container jobs need it)."""
        if self._engine is None:
            self._engine = Engine(self._node_id, self._root, self._address)
        return self._engine

    async def remove_orphan_containers(self) -> None:
        """Remove the containers a previous agent of this node left (labelled with the node id
        and root); the head node has failed their attempts as lost already. Skipped when no
        engine is configured (``DOCKER_HOST`` unset and no ``/var/run/docker.sock``)."""
        if not (os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock")):
            return
        engine = self.engine()
        try:
            removed = await asyncio.wait_for(
                engine.call(engine.remove_orphans, self.ids()), RECONCILE_SECONDS
            )
        except (EngineError, TimeoutError) as exc:
            log.info("not looking for leftover containers: %s", exc or "engine timed out")
            return
        if removed:
            log.warning("removed %d leftover containers of attempts: %s", len(removed), removed)

    def start(self, assignment: Assignment) -> None:
        """Start an assignment, unless it runs or has run here already (assignments repeat
        until the head node sees them start)."""
        aid = assignment.attempt_id
        if aid in self._running or aid in self._finished:
            return
        # first: a job run without its image is a process in every respect below
        assignment, stand_in = without_image(assignment, self.engine)
        run_as = assignment.run_as
        if assignment.container is not None and assignment.container.user is not None:
            run_as = None  # the container's own user stands (an account of the image's)
        try:
            account = account_for(run_as, self._node_id)
            # the root and below are the agent's to open up (0711); above it, the machine's
            closed = None if account is None else impassable(self._root.parent, account)
            if account is not None and closed is not None:
                raise AccountError(
                    f"account {account.name} cannot reach this node's root {self._root}: "
                    f"{closed} is closed to it; put MNP_HOME (or the node's root) under "
                    "folders other accounts may pass"
                )
        except AccountError as exc:
            reason = f"{START_FAILED_PREFIX}: {exc}"
            self._sink(Event(aid, "start_failed", now_ms(), reason=reason))
            return
        if assignment.container is not None and assignment.wiring is not None and self.netns:
            reason = (  # a container keeps the machine's network: no node address exists there
                f"{START_FAILED_PREFIX}: a multi-node job in containers needs loopback nodes "
                f"(MNP_NODE_NETWORK=loopback); this node ({self._address}) has its own network"
            )
            self._sink(Event(aid, "start_failed", now_ms(), reason=reason))
            return
        assignment = self._with_head_access(assignment)
        if self.netns is not None and assignment.container is None:
            assignment = on_machine(assignment)
        try:
            view = self._view(assignment, account)
        except OSError as exc:
            reason = f"{START_FAILED_PREFIX}: private /tmp: {exc}"
            self._sink(Event(aid, "start_failed", now_ms(), reason=reason))
            return
        if assignment.wiring is not None:
            try:
                assignment = self._wire(assignment, account, view)
            except (OSError, ValueError) as exc:
                reason = f"{START_FAILED_PREFIX}: wiring: {exc}"
                self._sink(Event(aid, "start_failed", now_ms(), reason=reason))
                return
        proc: RunningAttempt
        if assignment.container is not None:
            proc = ContainerAttempt(
                assignment, self._root, self._sink, engine=self.engine(), account=account
            )
        else:
            proc = AttemptProcess(
                assignment, self._root, self._sink, env=self._env, account=account,
                netns=self.netns, view=view, stand_in=stand_in, spares=self._spares,
            )  # fmt: skip
        self._running[aid] = proc  # before start(): a start_failed event removes it
        proc.start()

    def _with_head_access(self, assignment: Assignment) -> Assignment:
        """The attempt's environment with what lets the job call the head as itself: the
        Batch and Logs endpoints and ``MNP_URL``, its own key through the credentials
        endpoint, ``MNP_TOKEN``. The job's own values win. On a node of its own network
        namespace, :attr:`head_url` is the agent's relay (:mod:`launcher.headrelay`)."""
        in_container = assignment.container is not None  # the machine's network, not the node's
        url = (self.machine_head_url if in_container else self.head_url)() or self.head_url()
        server = (self.machine_credentials if in_container else None) or self.credentials
        if not url:
            return assignment
        extra = {
            "AWS_ENDPOINT_URL_BATCH": url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": url,
            "MNP_URL": url,
        }
        creds = assignment.credentials
        if creds is not None:
            if server is not None:
                extra.update(server.add(assignment.attempt_id, creds))
            extra["MNP_TOKEN"] = creds.get("nativeToken", "")
        return replace(assignment, environment={**extra, **assignment.environment})

    def kill(self, attempt_id: str, reason: str) -> None:
        """Stop a running attempt (see :meth:`AttemptProcess.kill`); unknown ids, and attempts
        already being killed: no-op."""
        target = self._running.get(attempt_id)
        if target is not None and attempt_id not in self._killed:
            self._killed.add(attempt_id)
            target.kill(reason)

    def mark_ready(self, attempt_id: str) -> None:
        """Tell a running MNP main node that every other node has started (its
        ``launcher.wire --ready-file``); a repeat is ignored."""
        main = self._running.get(attempt_id)
        if main is not None and attempt_id not in self._ready:
            self._ready.add(attempt_id)
            home = attempt_dir_for(main.assignment, self._root)
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            with contextlib.suppress(OSError):  # the attempt is ending anyway
                # the job may own that directory: never follow a link it left there
                os.close(os.open(wiring_dir(home) / "ready", flags, 0o600))

    def ended(self, attempt_id: str) -> None:
        """The attempt has sent its last event: forget it, revoke its SSH access, remove its
        wiring and (if the job left nothing else there) its directory."""
        proc = self._running.pop(attempt_id, None)
        for server in (self.credentials, self.machine_credentials):
            if server is not None:
                server.remove(attempt_id)
        self._killed.discard(attempt_id)
        self._ready.discard(attempt_id)
        if self.ssh is not None:
            self.ssh.revoke(attempt_id)
        if proc is not None:
            attempt_dir = attempt_dir_for(proc.assignment, self._root)
            if proc.assignment.wiring is not None:
                # the job's private key, ssh_config and hostfiles go with the attempt
                shutil.rmtree(wiring_dir(attempt_dir), ignore_errors=True)
            if self.own_view and proc.assignment.container is None:  # its /tmp, too
                shutil.rmtree(attempt_dir / PRIVATE_TMP, ignore_errors=True)
            own = isinstance(proc, AttemptProcess) and proc.account is None
            tidy(attempt_dir, self._spares if own else None)
        self._finished[attempt_id] = None
        if len(self._finished) > FINISHED_MEMORY:
            del self._finished[next(iter(self._finished))]

    def read_logs(self) -> None:
        """Turn every running attempt's new output into ``log`` events."""
        for proc in list(self._running.values()):
            proc.read_logs()

    async def stop_all(self) -> None:
        """SIGTERM every job, SIGKILL what is left after the grace (capped), wait for exits."""
        procs = list(self._running.values())
        if not procs:
            return
        grace = min(STOP_GRACE_CAP_SECONDS, max(p.assignment.kill_grace_seconds for p in procs))
        for proc in procs:
            proc.kill(STOP_REASON, grace=min(grace, proc.assignment.kill_grace_seconds))
        await _wait_all(procs, grace + 1.0)
        for proc in procs:
            proc.kill_now()
        await _wait_all(procs, 1.0)

    async def kill_all(self) -> None:
        """SIGKILL every job at once and wait (briefly) for the exits."""
        procs = list(self._running.values())
        for proc in procs:
            proc.kill_now()
        await _wait_all(procs, 1.0)

    def close(self) -> None:
        """Kill and release every attempt without emitting events; blocks."""
        for proc in list(self._running.values()):
            proc.close()

    def close_engine(self) -> None:
        """Release the engine client, if one was made."""
        if self._engine is not None:
            self._engine.close()

    def _view(self, assignment: Assignment, account: Account | None) -> View | None:
        """With :attr:`own_view`, a process attempt's own view of the node: its private
        ``/tmp`` (made here, ``account``'s), the nodes' roots and its workdir kept reachable,
        its gang's ``ssh_config`` as the system one, the node's CPUs; on a namespace node also
        the shared filesystem bound at its path (a host has it mounted there already). None
        elsewhere (loopback nodes share the machine's ``/tmp``) and for containers (they have
        their own)."""
        if not self.own_view or assignment.container is not None:
            return None
        attempt_dir = make_attempt_dir(assignment, self._root, account)
        tmp = make_private_dir(attempt_dir / PRIVATE_TMP)
        if account is not None:
            account.give(tmp, PRIVATE_DIR_MODE)
        # the folder of every local node's root: MPI's daemons here start in the main node's
        # working directory, which lies in another node's root (one machine, one filesystem)
        keep = (str(self._root.parent), *self._software, *named_tmp_dirs(assignment))
        wiring = assignment.wiring
        ssh_config = None
        if wiring is not None and "ssh_config" in wiring.files:
            ssh_config = str(wiring_dir(attempt_dir) / "ssh_config")
        fs = assignment.shared_filesystem
        shared = (fs.source, fs.mount_path) if fs is not None and self.netns is not None else None
        return View(str(tmp), keep, ssh_config, self.cpus, shared)

    def _wire(
        self, assignment: Assignment, account: Account | None, view: View | None = None
    ) -> Assignment:
        """Lay out an MNP attempt's files and let its key in over SSH (for this attempt only;
        its sessions run as ``account``, like the attempt, and see the node as ``view``)."""
        # the wiring lives in the agent's own attempt directory, never in the job's working
        # directory (other jobs may share it); a container sees it mounted at CONTAINER_WIRING
        attempt_dir = make_attempt_dir(assignment, self._root, account)
        if assignment.container is None:
            wired = prepare(assignment, attempt_dir, account=account)
        else:
            wired = prepare(in_container(assignment), attempt_dir, CONTAINER_WIRING, account)
            if wired.container is not None and wired.wiring is not None:
                mount = Mount(CONTAINER_WIRING, str(wiring_dir(attempt_dir)))
                run = replace(wired.container, mounts=(*wired.container.mounts, mount))
                wired = replace(wired, container=run)
        if wired.wiring is not None:
            if self.ssh is None:
                raise ValueError("this node serves no SSH (started with --no-ssh)")
            ssh_env = dict(wired.wiring.ssh_environment)
            if account is not None and wired.container is None:
                ssh_env.update(_private_tmp(wiring_dir(attempt_dir), account))
            self.ssh.authorize(
                wired.attempt_id,
                wired.wiring.authorized_key,
                ssh_env,
                # commands arriving over SSH run inside the attempt's container
                container=container_name(self._node_id, wired.attempt_id)
                if wired.container is not None
                else None,
                account=account,
                view=view,
            )
        return wired


def on_machine(assignment: Assignment) -> Assignment:
    """``assignment`` with its working directory and output paths as the agent (outside the
    attempt's mount namespace) reaches them: those on the shared filesystem's ``mountPath``
    moved under its ``source`` (:mod:`launcher.mountns` takes the working directory back
    to ``mountPath`` for the command)."""
    fs = assignment.shared_filesystem
    if fs is None:
        return assignment
    return replace(
        assignment,
        workdir=None if assignment.workdir is None else fs.on_machine(assignment.workdir),
        stdout_path=None
        if assignment.stdout_path is None
        else fs.on_machine(assignment.stdout_path),
        stderr_path=None
        if assignment.stderr_path is None
        else fs.on_machine(assignment.stderr_path),
    )


def software_dirs(env: Mapping[str, str]) -> tuple[str, ...]:
    """What the attempt's own tools run from, kept reachable when they lie under the
    machine's ``/tmp`` (a checkout or virtualenv there): mnp's source (``launcher.wire``,
    srun), the interpreter's prefixes, ``sys.path``, and the ``PATH``/``PYTHONPATH`` entries."""
    source = str(Path(__file__).resolve().parent.parent)
    found = [source, sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]
    for name in ("PATH", "PYTHONPATH"):
        found += env.get(name, "").split(os.pathsep)
    return tuple(
        dict.fromkeys(p for p in found if p.startswith("/tmp/") and os.path.isdir(p))
    )


def named_tmp_dirs(assignment: Assignment) -> tuple[str, ...]:
    """The directories under the machine's ``/tmp`` an attempt names: its workdir, and those
    :func:`launcher.netns.tmp_dirs_named` finds in its command, environment and script."""
    texts = [*assignment.command, *assignment.environment.values(), assignment.script or ""]
    return tmp_dirs_named([assignment.workdir or "", *texts])


def _private_tmp(wiring: Path, account: Account) -> dict[str, str]:
    """A switched gang's own temporary directory for its SSH sessions (MPI's session and
    shared-memory files), inside its wiring (so it goes with the attempt): the node's
    ``tmp`` belongs to the agent, which the account may not write."""
    tmp = wiring / "tmp"
    tmp.mkdir(mode=0o700, exist_ok=True)
    account.give(tmp, 0o700)
    return {"TMPDIR": str(tmp), "OMPI_MCA_btl_vader_backing_directory": str(tmp)}


LOG_NAMES = frozenset({"stdout.log", "stderr.log"})


def tidy(workdir: Path, spares: Spares | None = None) -> None:
    """Remove an ended attempt's working directory when the job left nothing in it but its
    logs (already read into events for the head node); keep it otherwise. With ``spares``,
    the logs go there for the next attempts instead (:mod:`launcher.spares`; the directories
    are removed all the same)."""
    try:
        names = os.listdir(workdir)
        if not set(names) <= LOG_NAMES:
            return
        for name in names:  # plain files the agent made (opened O_NOFOLLOW): no tree walk
            path = workdir / name
            if spares is None or not spares.keep_file(path):
                os.unlink(path)
        os.rmdir(workdir)
    except OSError:
        pass


async def _wait_all(procs: Sequence[RunningAttempt], timeout: float) -> None:
    waits = [asyncio.ensure_future(p.wait()) for p in procs]
    if waits:
        _, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
