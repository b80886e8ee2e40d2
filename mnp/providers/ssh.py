"""The SSH provider: the user's own hosts (an UNMANAGED environment), reached with OpenSSH.

Every call blocks (it runs ``ssh``) and is meant for a thread, never the head's event loop.
Everything goes through one chokepoint, :meth:`SshProvider.run`: an argv list (the remote
command is one ``shlex.join``-ed argv, so nothing is assembled by formatting), ``BatchMode``
(no prompt can hang it), ``StrictHostKeyChecking=yes`` against a known-hosts file made from
the host's pinned key — or the operator's ``known_hosts`` file — so a host key is never
trusted on first use, a connect timeout and an overall timeout. ssh's own failures (exit 255)
become a :class:`HostError` whose kind names the cause: ``HostKeyMismatch``,
``AuthenticationRefused``, ``Unreachable``; a host without a usable Python is
``NoUsablePython``, an agent that would not start ``AgentFailed``.

On the host: the agent's files in ``~/.mnp-node/agent/<version>/`` (:mod:`.sshbundle`, skipped
when its ``DIGEST`` matches), each node's root in ``~/.mnp-node/nodes/<node id>/`` (the agent's
log, pid and secret, ``head.url``). Secrets (the join token; never the head's token) travel on the
SSH channel's stdin only, never on a command line. The head keeps one reverse tunnel per
host (``ssh -N -R 0:127.0.0.1:<head port>``, the port sshd allocates read from ssh's log)
unless the host reaches the head by a URL of its own.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mnp.config import private_dir
from mnp.errors import ProviderError
from mnp.providers import sshbundle
from mnp.providers.sshremote import INSTALL, PROBE, START, STOP
from mnp.spec.environments import Host, Node

CONNECT_TIMEOUT = 5
"""Seconds ssh waits for a host's TCP connection (a host that is down says so this fast)."""
CALL_TIMEOUT = 60.0
TUNNEL_UP_TIMEOUT = 15.0
MIN_PYTHON = (3, 11)
HOST_ALIAS = "mnp-host"
"""The name a pinned key is filed under (``HostKeyAlias``): the key belongs to the host record,
whatever address or port it is reached by."""


SHARED_CHECK = "import os, sys; sys.exit(0 if os.path.isdir(sys.argv[1]) else 3)"
"""Run by the host's Python with the shared filesystem's mount path as its argument."""


class HostError(Exception):
    """A host could not be brought up or reached; ``kind`` names why (see the module)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Probe:
    version: tuple[int, int]
    vcpus: int
    memory_mib: int
    installed_digest: str | None


@dataclass(frozen=True, slots=True)
class AgentStart:
    """What the host's agent is started with; ``join_token`` and ``token`` go on stdin."""

    node_id: str
    compute_environment: str
    address: str
    vcpus: int
    memory_mib: int
    head: str
    join_token: str | None
    token: str | None


def classify(stderr: str, where: str) -> HostError:
    """ssh's error text (exit 255) → the :class:`HostError` naming the cause."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "ssh failed without a message"
    if "IDENTIFICATION HAS CHANGED" in text or "Host key verification failed" in text:
        shown = re.search(r"SHA256:[A-Za-z0-9+/=]+", text)
        seen = f" (it showed {shown.group(0)})" if shown else ""
        return HostError("HostKeyMismatch", f"{where} did not show its pinned host key{seen}")
    if "Permission denied" in text:
        return HostError("AuthenticationRefused", f"{where} refused the key: {last}")
    return HostError("Unreachable", f"{where}: {last}")


class SshProvider:
    """Brings hosts up and down over SSH; keeps the head's tunnels to them.

    Safe to call from several threads at once for different nodes (the tunnels' table has a
    lock); calls for one node must not overlap (the head runs one bring-up per host).
    :meth:`launch` is refused: the head never launches an SSH host, an operator adds it.
    """

    def __init__(self, head_url: str, home: Path, token: str | None) -> None:
        self.head_url = head_url
        self.home = home
        self.token = token
        self._tunnels: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._lock = threading.Lock()

    # --- the Provider protocol ----------------------------------------------------------------
    def launch(self, node: Node) -> int | None:
        raise ProviderError("SSH hosts are added with addHost, not launched", node.node_id)

    def is_alive(self, node: Node) -> bool:
        return True  # its agent says so by polling; the head cannot look from here

    def stop(self, nodes: list[Node], grace_seconds: float) -> None:
        """Nothing: a host's agent is stopped by :meth:`stop_host` (it needs the host)."""

    # --- ssh ------------------------------------------------------------------------------------
    def _dir(self) -> Path:
        return private_dir(self.home / "hosts")

    def _known_hosts(self, host: Host, node_id: str) -> list[str]:
        if host.host_key is None:
            return ["-o", f"UserKnownHostsFile={host.known_hosts}"]
        path = self._dir() / f"{node_id}.known_hosts"
        path.write_text(f"{HOST_ALIAS} {host.host_key}\n")
        return ["-o", f"UserKnownHostsFile={path}", "-o", f"HostKeyAlias={HOST_ALIAS}"]

    def ssh_argv(self, host: Host, node_id: str) -> list[str]:
        """``ssh`` with every option that keeps it from prompting, trusting or hanging."""
        return [
            "ssh", "-F", "none", "-T",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "CheckHostIP=no",
            *self._known_hosts(host, node_id),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i", host.identity_file,
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT}", "-o", "LogLevel=INFO",
            *(["-o", f"ProxyCommand={host.proxy_command}"] if host.proxy_command else []),
            "-p", str(host.port), "-l", host.user, host.address,
        ]  # fmt: skip

    def run(
        self, host: Host, node_id: str, remote: list[str], stdin: bytes = b"",
        timeout: float = CALL_TIMEOUT,
    ) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        """Run ``remote`` (an argv) on the host. Raises :class:`HostError` for ssh's own
        failures and timeouts; the remote command's exit status is the caller's to judge."""
        argv = [*self.ssh_argv(host, node_id), "--", shlex.join(remote)]
        where = f"{host.user}@{host.address}:{host.port}"
        try:
            r = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            no_answer = f"{where} did not answer within {timeout:.0f} s"
            raise HostError("Unreachable", no_answer) from None
        except OSError as e:
            raise HostError("Unreachable", f"cannot run ssh: {e}") from e
        if r.returncode == 255:
            raise classify(r.stderr.decode(errors="replace"), where)
        return r

    # --- bring-up -------------------------------------------------------------------------------
    def probe(self, host: Host, node_id: str) -> Probe:
        """The host's Python, vCPUs, memory and installed agent; :class:`HostError`
        ``NoUsablePython`` when ``host.python`` is missing or older than 3.11."""
        version = sshbundle.current().version
        r = self.run(host, node_id, [host.python, "-c", PROBE, version])
        out = r.stdout.decode(errors="replace").strip()
        if r.returncode != 0 or not out.startswith("{"):
            err = r.stderr.decode(errors="replace").strip().splitlines()
            detail = err[-1] if err else f"exit status {r.returncode}"
            raise HostError("NoUsablePython", f"{host.python} on {host.address}: {detail}")
        d = json.loads(out.splitlines()[-1])
        found = (int(d["version"][0]), int(d["version"][1]))
        if found < MIN_PYTHON:
            raise HostError(
                "NoUsablePython",
                f"{host.python} on {host.address} is {found[0]}.{found[1]}; the agent needs ≥ 3.11",
            )
        return Probe(found, int(d["nproc"]), int(d["memory_mib"]), d.get("digest"))

    def check_shared(self, host: Host, node_id: str, mount_path: str) -> None:
        """The environment's shared filesystem is a directory at ``mount_path`` on the host
        (its admin mounted it: mnp mounts nothing there); :class:`HostError`
        ``SharedFilesystemMissing`` otherwise."""
        r = self.run(host, node_id, [host.python, "-c", SHARED_CHECK, mount_path])
        if r.returncode != 0:
            raise HostError(
                "SharedFilesystemMissing",
                f"{mount_path} is not a directory on {host.address} (mount it there first)",
            )

    def install(self, host: Host, node_id: str, probe: Probe) -> bool:
        """Put the head's agent on the host unless the same files are there; True: copied."""
        bundle = sshbundle.current()
        if probe.installed_digest == bundle.digest:
            return False
        remote = [host.python, "-c", INSTALL, bundle.version, bundle.digest]
        r = self.run(host, node_id, remote, stdin=bundle.tar, timeout=120)
        if r.returncode != 0:
            raise HostError("InstallFailed", _tail(r.stderr))
        return True

    def start(self, host: Host, a: AgentStart) -> int:
        """Start the node's agent detached on the host (or find it running: then only its
        head URL is updated); returns its pid. :class:`HostError` ``NoUsablePython`` when the
        host's Python cannot import it, ``AgentFailed`` when it exits at once."""
        body = {
            "node_id": a.node_id, "compute_environment": a.compute_environment,
            "address": a.address, "vcpus": a.vcpus, "memory_mib": a.memory_mib,
            "head": a.head, "version": sshbundle.current().version,
            "join_token": a.join_token, "token": a.token,
        }  # fmt: skip
        r = self.run(host, a.node_id, [host.python, "-c", START], json.dumps(body).encode())
        out = r.stdout.decode(errors="replace").strip().splitlines()
        try:
            answer = json.loads(out[-1])
        except (IndexError, ValueError):
            raise HostError("AgentFailed", _tail(r.stderr)) from None
        if "error" in answer:
            raise HostError(str(answer["error"]), str(answer["message"]))
        return int(answer["pid"])

    def stop_host(self, host: Host, node_id: str, grace_seconds: float) -> None:
        """Stop the node's agent on the host (SIGTERM, SIGKILL after the grace) and the
        tunnel. A host that cannot be reached is logged by the caller (HostError)."""
        try:
            self.run(host, node_id, [host.python, "-c", STOP, node_id, str(grace_seconds)],
                     timeout=grace_seconds + CALL_TIMEOUT)  # fmt: skip
        finally:
            self.close_tunnel(node_id)

    # --- tunnels ----------------------------------------------------------------------------------
    def open_tunnel(self, host: Host, node_id: str) -> int:
        """A new reverse tunnel to the head (the node's old one closed); returns the port the
        host's agent dials on its loopback. :class:`HostError` when it does not come up."""
        self.close_tunnel(node_id)
        head_port = urlsplit(self.head_url).port
        log_path = self._dir() / f"{node_id}.tunnel.log"
        argv = [
            *self.ssh_argv(host, node_id), "-N", "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-R", f"0:127.0.0.1:{head_port}",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        where = f"{host.user}@{host.address}:{host.port}"
        deadline = time.monotonic() + TUNNEL_UP_TIMEOUT
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            m = re.search(r"Allocated port (\d+) for remote forward", text)
            if m:
                with self._lock:
                    self._tunnels[node_id] = (proc, int(m.group(1)))
                return int(m.group(1))
            if proc.poll() is not None:
                raise classify(text, where)
            time.sleep(0.05)  # polling ssh's log for the allocated port, with a deadline
        _end(proc)
        raise HostError("Unreachable", f"{where}: the tunnel did not come up")

    def tunnel_alive(self, node_id: str) -> bool:
        with self._lock:
            t = self._tunnels.get(node_id)
        return t is not None and t[0].poll() is None

    def close_tunnel(self, node_id: str) -> None:
        with self._lock:
            t = self._tunnels.pop(node_id, None)
        if t is not None:
            _end(t[0])

    def close_all(self) -> None:
        """Close every tunnel (the head is exiting; agents keep running and wait for it)."""
        with self._lock:
            ids = list(self._tunnels)
        for node_id in ids:
            self.close_tunnel(node_id)


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _tail(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) if lines else "no output"
