# ~445 lines: one SSH server, its scopes (a gang each), its sessions and their process groups.
"""The node's embedded SSH server: how ``mpirun``/``mpiexec`` on a job's main node reach it.

One :class:`NodeSshServer` per node agent (asyncssh, on the agent's event loop). It accepts
only public-key authentication, and only with the keys of attempts the agent has authorized;
every exec request runs ``/bin/sh -c <command>`` as the scope's account (the attempt's, see
:mod:`launcher.accounts`; else the agent's user), in a new process group,
with stdin/stdout/stderr piped through and the exit status passed back (128+N for a process
killed by signal N). No PTY, shell, subsystem, SFTP/scp, agent, X11 or port forwarding:
Open MPI's ``orted`` and MPICH hydra's proxies need none of them.

Lifetimes: a session's process group is killed (SIGTERM, SIGKILL after the grace period)
when its client disconnects, when its scope is revoked and when the server closes. Group
members that outlive a session's shell (background children that closed stdout) stay
tracked until the scope is revoked, and are killed then.

The shell of a session and the copying of its bytes are :mod:`launcher.sshsession`'s.

Not thread-safe: call every method on the loop that ran :meth:`NodeSshServer.start`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh

from launcher.accounts import Account
from launcher.netns import View, socket_in, spawn_args, tmp_dirs_named
from launcher.pgroups import group_alive, signal_group
from launcher.sshsession import Child, Session, serve

log = logging.getLogger("launcher.sshd")

SessionExitHook = Callable[[str, str, int], None]
"""``on_session_exit(scope, command, exit_code)``."""
SessionStartHook = Callable[[str, str], None]
"""``on_session_start(scope, command)``: called once a session's command has started."""

BASE_ENV_NAMES = ("PATH", "HOME", "LANG", "USER", "LOGNAME", "SHELL")
"""Taken from the agent's own environment; everything else comes from the client, the node
and the scope."""
KEEPALIVE_SECONDS = 15.0
"""Server keepalive interval; a client silent for 3 intervals is dropped (and its sessions
killed), which catches a vanished main node that sent no FIN."""


@dataclass(eq=False)
class _Scope:
    key: asyncssh.SSHKey
    environment: dict[str, str]
    sessions: set[Session] = field(default_factory=set)
    lingering: set[int] = field(default_factory=set)
    """Process groups whose leader exited while other members lived on."""
    connections: set[_Connection] = field(default_factory=set)
    container: str | None = None
    """Run the scope's commands inside this Docker container (``docker exec``)."""
    account: Account | None = None
    """Sessions run as this account (same ids, groups, HOME as the attempt); None: the
    agent's."""
    view: View | None = None
    """The attempt's view of the node (its ``/tmp``…), which its sessions share."""


class NodeSshServer:
    """A node's SSH endpoint for the multi-node parallel jobs it runs.

    ``node_env`` (e.g. ``MNP_NODE_ID``, ``TMPDIR``, ``OMPI_MCA_btl_vader_backing_directory``)
    is added to every session's environment. Sessions see, lowest precedence first: the
    agent's ``PATH HOME LANG USER LOGNAME SHELL``, what the client sent, ``node_env``, the
    scope's ``environment``, then ``SSH_CONNECTION``.

    ``on_session_exit(scope, command, exit_code)`` is called (on the loop) when a session's
    shell exits on its own, with 128+N for death by signal N; not for sessions the server
    killed itself. Exceptions it raises are logged and dropped.
    """

    def __init__(
        self,
        address: str,
        port: int,
        host_key_path: Path,
        node_env: Mapping[str, str],
        on_session_exit: SessionExitHook | None = None,
        on_session_start: SessionStartHook | None = None,
        kill_grace_seconds: float = 2.0,
        netns: str | None = None,
    ) -> None:
        """``netns``: listen on ``address:port`` inside that network namespace of the node's
        and run every session's shell there (containers' ``docker exec`` excepted: they keep
        the machine's network, where the engine is)."""
        self._address = address
        self._netns = netns
        self._requested_port = port
        self._host_key_path = host_key_path
        self._node_env = dict(node_env)
        self._on_session_exit = on_session_exit
        self._on_session_start = on_session_start
        self.on_group: Callable[[int, bool], None] | None = None
        """``on_group(pgid, alive)``: a session's process group started (True) or emptied
        (False); the agent's fence (:mod:`launcher.lease`) holds it meanwhile."""
        self._grace = kill_grace_seconds
        self._scopes: dict[str, _Scope] = {}
        self._connections: set[_Connection] = set()
        self._sessions: set[Session] = set()
        self._kill_timers: dict[int, asyncio.TimerHandle] = {}
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._host_key: asyncssh.SSHKey | None = None

    async def start(self) -> None:
        """Load (or create, mode 0600) the ed25519 host key and start listening.

        Raises :class:`OSError` when the address cannot be bound and
        :class:`asyncssh.KeyImportError` for an unreadable host key file.
        """
        self._host_key = _load_or_create_host_key(self._host_key_path)
        where: dict[str, Any] = {"host": self._address, "port": self._requested_port}
        if self._netns is not None:  # a socket made in the node's namespace stays its own
            where = {"sock": socket_in(self._netns, self._address, self._requested_port)}
        self._acceptor = await asyncssh.listen(
            **where,
            server_factory=lambda: _Connection(self),
            server_host_keys=[self._host_key],
            process_factory=self._run_session,
            encoding=None,
            allow_pty=False,
            line_editor=False,
            x11_forwarding=False,
            agent_forwarding=False,
            allow_scp=False,
            sftp_factory=None,
            login_timeout=30.0,
            keepalive_interval=KEEPALIVE_SECONDS,
            keepalive_count_max=3,
        )

    @property
    def port(self) -> int:
        """The bound TCP port (after :meth:`start`)."""
        if self._acceptor is None:
            raise RuntimeError("NodeSshServer is not started")
        return self._acceptor.get_port()

    @property
    def host_public_key(self) -> str:
        """The host key as an OpenSSH public key line without comment: ``ssh-ed25519 AAAA…``."""
        if self._host_key is None:
            raise RuntimeError("NodeSshServer is not started")
        line = self._host_key.export_public_key("openssh").decode("ascii")
        return " ".join(line.split()[:2])

    def authorize(
        self,
        scope: str,
        public_key: str,
        environment: Mapping[str, str],
        container: str | None = None,
        account: Account | None = None,
        view: View | None = None,
    ) -> None:
        """Accept clients presenting ``public_key`` (an OpenSSH public key line) for ``scope``.

        Their sessions get ``environment`` on top of the node's. With ``container`` (a Docker
        container's name) each command runs inside that container through ``docker exec``,
        with the container's own environment plus what the client sent (the node's paths mean
        nothing there). Authorizing a scope again replaces its key, environment and container
        for new sessions. With ``account`` each session's shell runs as that account (its
        ids, groups, ``HOME``/``USER``/``LOGNAME``, umask 077), starting in its home. With
        ``view`` (on a node with a namespace) each session sees the attempt's ``/tmp``,
        ``ssh_config`` and CPUs, as the attempt's own processes do. Raises
        :class:`asyncssh.KeyImportError` for a malformed key.
        """
        key = asyncssh.import_public_key(public_key)
        existing = self._scopes.get(scope)
        if existing is not None:
            existing.key, existing.environment = key, dict(environment)
            existing.container, existing.account, existing.view = container, account, view
        else:
            self._scopes[scope] = _Scope(
                key=key,
                environment=dict(environment),
                container=container,
                account=account,
                view=view,
            )

    def revoke(self, scope: str) -> None:
        """Stop accepting ``scope``'s key, drop its connections and kill its sessions'
        process groups (SIGTERM now, SIGKILL after the grace period). Unknown scope: no-op."""
        state = self._scopes.pop(scope, None)
        if state is None:
            return
        for session in state.sessions:
            session.killed = True
            self._terminate_group(session.pgid)
        for pgid in state.lingering:
            self._terminate_group(pgid)
        for connection in state.connections:
            connection.close()

    def session_count(self, scope: str) -> int:
        """Sessions of ``scope`` whose shell is still running."""
        state = self._scopes.get(scope)
        return 0 if state is None else len(state.sessions)

    async def close(self) -> None:
        """Stop listening, revoke every scope, drop every connection, and return once every
        session's shell has exited (killed with SIGKILL after the grace period)."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for scope in list(self._scopes):
            self.revoke(scope)
        for connection in list(self._connections):
            connection.close()
        for session in list(self._sessions):
            session.killed = True
            self._terminate_group(session.pgid)
        waits = [asyncio.ensure_future(s.done.wait()) for s in self._sessions]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self._grace + 5.0)
            for w in pending:
                w.cancel()
        for pgid, timer in list(self._kill_timers.items()):
            timer.cancel()
            signal_group(pgid, signal.SIGKILL)
        self._kill_timers.clear()

    # -- authentication (called by _Connection) ------------------------------------------

    def _scope_for_key(self, key: asyncssh.SSHKey) -> str | None:
        # Latest authorization first, should two scopes ever share a key.
        for scope, state in reversed(self._scopes.items()):
            if state.key.public_data == key.public_data:
                return scope
        return None

    # -- sessions --------------------------------------------------------------------------

    def _environment(
        self, process: asyncssh.SSHServerProcess[bytes], scope: _Scope
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in BASE_ENV_NAMES if k in os.environ}
        if scope.account is not None:
            env.update(scope.account.environment())
        env.update(process.env)
        env.update(self._node_env)
        env.update(scope.environment)
        peer = process.get_extra_info("peername") or ("", 0)
        sock = process.get_extra_info("sockname") or ("", 0)
        env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {sock[0]} {sock[1]}"
        return env

    async def _run_session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        connection: _Connection = process.get_extra_info("connection").get_owner()
        scope_name = connection.scope
        scope = self._scopes.get(scope_name) if scope_name is not None else None
        command = process.command
        if scope_name is None or scope is None:
            process.stderr.write(b"mnp: this job's SSH access has been revoked\n")
            process.exit(255)
            return
        if command is None:
            process.stderr.write(b"mnp: only commands can be run here (no shell or subsystem)\n")
            process.exit(1)
            return
        popen = self._spawn(process, scope, command)
        if popen is None:
            return
        child = Child(popen, asyncio.get_running_loop())
        session = Session(scope_name, command, popen.pid)
        if self.on_group is not None:
            self.on_group(popen.pid, True)
        scope.sessions.add(session)
        self._sessions.add(session)
        if self._on_session_start is not None:
            try:
                self._on_session_start(scope_name, command)
            except Exception:
                log.exception("on_session_start hook failed")
        try:
            await serve(process, child, session, self._terminate_group, self._session_exited)
        finally:
            scope.sessions.discard(session)
            self._sessions.discard(session)
            if not child.exited.done():  # cancelled: never leave the group behind
                session.killed = True
                self._terminate_group(session.pgid)
            elif group_alive(session.pgid):
                if self._scopes.get(scope_name) is scope:
                    scope.lingering.add(session.pgid)
                else:
                    self._terminate_group(session.pgid)
            # Forget groups that emptied, so a revoke never signals a reused group id.
            scope.lingering = {g for g in scope.lingering if group_alive(g)}
            if self.on_group is not None and not group_alive(session.pgid):
                self.on_group(session.pgid, False)  # a lingering one the fence prunes itself
            session.done.set()

    def _spawn(
        self, process: asyncssh.SSHServerProcess[bytes], scope: _Scope, command: str
    ) -> subprocess.Popen[bytes] | None:
        """Start a session's shell (inside the scope's container, if it has one); None, with
        exit status 127 sent to the client, when it cannot be started."""
        env = self._environment(process, scope)
        home = env.get("HOME", "/")
        argv = ["/bin/sh", "-c", command]
        if scope.container is not None:
            from launcher.engine import exec_argv

            inside = {**process.env, "SSH_CONNECTION": env["SSH_CONNECTION"]}
            argv = exec_argv(shutil.which("docker") or "docker", scope.container, inside, command)
            env = {**env, **{k: v for k, v in os.environ.items() if k.startswith("DOCKER_")}}
        # a container's commands run as the container's user (docker exec keeps it); the
        # docker client itself must stay the agent's, which alone may reach the engine
        user = scope.account if scope.container is None else None
        try:
            netns = None if scope.container else self._netns
            argv, switch = spawn_args(argv, netns, user, _session_view(scope.view, command, env))
            # Popen can vfork unless it switches ids or makes the session's view (a
            # preexec_fn); own session so a kill reaches the group.
            return subprocess.Popen(
                argv,
                env=env,
                cwd=home if os.path.isdir(home) else "/",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                **switch,
            )
        except OSError as exc:
            process.stderr.write(f"mnp: cannot start {argv[0]}: {exc}\n".encode())
            process.exit(127)
            return None

    def _session_exited(self, session: Session, code: int) -> None:
        log.debug("ssh session of %s exited with %d: %s", session.scope, code, session.command)
        if self._on_session_exit is None:
            return
        try:
            self._on_session_exit(session.scope, session.command, code)
        except Exception:
            log.exception("on_session_exit hook failed")

    def _terminate_group(self, pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return  # gone: arming a SIGKILL could hit a group that reuses the id
        except PermissionError:
            pass
        if pgid not in self._kill_timers:
            loop = asyncio.get_running_loop()
            self._kill_timers[pgid] = loop.call_later(self._grace, self._kill_group, pgid)

    def _kill_group(self, pgid: int) -> None:
        self._kill_timers.pop(pgid, None)
        signal_group(pgid, signal.SIGKILL)


def _session_view(view: View | None, command: str, env: Mapping[str, str]) -> View | None:
    """The attempt's view for one session, also keeping the ``/tmp`` paths its command and
    environment name (an MPI daemon's, which the main node's launcher chose)."""
    if view is None:
        return None
    named = tmp_dirs_named([command, *env.values()])
    return replace(view, keep=tuple(dict.fromkeys((*view.keep, *named))))


class _Connection(asyncssh.SSHServer):
    """One client connection; remembers which scope its key belongs to."""

    def __init__(self, server: NodeSshServer) -> None:
        self._server = server
        self._conn: asyncssh.SSHServerConnection | None = None
        self.scope: str | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        state = self._server._scopes.get(self.scope) if self.scope is not None else None
        if state is not None:
            state.connections.discard(self)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def begin_auth(self, username: str) -> bool:
        return True  # the key is the credential; commands run as the agent's user

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Called for the key the client finally signs with right before its signature is
        # checked, so the last accepted key is the one the connection authenticated with.
        scope = self._server._scope_for_key(key)
        if scope is None:
            return False
        self.scope = scope
        return True

    def auth_completed(self) -> None:
        state = self._server._scopes.get(self.scope) if self.scope is not None else None
        if state is None:  # revoked between key check and completion
            self.close()
        else:
            state.connections.add(self)


def _load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    if path.exists():
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="mnp-node")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a key
    return key
