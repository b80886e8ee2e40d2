"""What runs on a node with a network of its own (see :mod:`mnp.providers.netns`).

The agent itself stays in the machine's network namespace — it reaches the head node on
loopback — and puts into the node's namespace only what runs *on* the node:

- listening sockets (the node's SSH endpoint on port 22 of its own address): a socket belongs
  to the namespace it was made in, for good, so :func:`socket_in` switches the calling thread
  into the node's namespace just for the ``socket()`` call and back;
- processes (every attempt's, every SSH session's shell): with a :class:`View`, the child
  Popen forks enters the namespace and lays out the attempt's view
  (:func:`launcher.mountns.preexec`): the node's ``/etc/netns/<namespace>/hosts`` over
  ``/etc/hosts``, so the other nodes' names resolve, a private ``/tmp``, the gang's
  ``ssh_config`` and the node's share of the CPUs; without one, :func:`exec_prefix` is the
  argv prefix ``ip netns exec <namespace>``, which does the first of those.

Python 3.11 has no ``os.setns``; libc's ``setns(2)`` is called through :mod:`ctypes`. Only the
calling thread moves, and it moves back before :func:`socket_in` returns (also on error).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import socket
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher import mountns
from launcher.accounts import SWITCHED_UMASK, Account

NETNS_DIR = Path(mountns.NETNS_DIR)
NAMESPACE_RE = re.compile(r"mnp-[a-z0-9]{1,8}-[a-z0-9][a-z0-9-]{0,39}")


class NetnsUnavailable(OSError):
    """The node's namespace does not exist or cannot be entered."""


def check_namespace(name: str) -> Path:
    """The namespace's handle under /run/netns; raises for a name mnp would not make."""
    if NAMESPACE_RE.fullmatch(name) is None:
        raise NetnsUnavailable(f"{name!r} is not an mnp node namespace")
    path = NETNS_DIR / name
    if not path.exists():
        raise NetnsUnavailable(f"no network namespace {name}")
    return path


def _setns(fd: int) -> None:
    if mountns.load_libc().setns(fd, mountns.CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsUnavailable(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside namespace ``name`` for the ``with`` body, then back."""
    target = os.open(check_namespace(name), os.O_RDONLY | os.O_CLOEXEC)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def socket_in(name: str, address: str, port: int, backlog: int = 128) -> socket.socket:
    """A TCP socket listening on ``address:port`` inside namespace ``name``."""
    with entered(name):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def exec_prefix(name: str | None) -> list[str]:
    """The argv prefix that runs a command on the node: empty without a namespace. ``ip`` by
    its full path, as the command's own ``PATH`` (the job's) may lack it."""
    if name is None:
        return []
    check_namespace(name)
    return [shutil.which("ip") or "ip", "netns", "exec", name]


@dataclass(frozen=True, slots=True)
class View:
    """What one attempt's processes (and its gang's SSH sessions here) see of the node, on a
    node with a namespace of its own: see :mod:`launcher.mountns`."""

    tmp: str
    """The attempt's directory seen as ``/tmp``."""
    keep: tuple[str, ...] = ()
    """Paths under the machine's ``/tmp`` that stay reachable (the node's root, a workdir)."""
    ssh_config: str | None = None
    """The gang's ``ssh_config``, seen as ``/etc/ssh/ssh_config``."""
    cpus: tuple[int, ...] = ()
    """The node's share of the machine's CPUs (the processes' affinity; empty: all)."""
    shared: tuple[str, str] | None = None
    """The environment's shared filesystem: ``(source, mountPath)``, bound there."""


TMP_PATH = re.compile(r"/tmp/[^\s'\"`;:|&<>()$*?]+")
MAX_KEPT = 16


def tmp_dirs_named(texts: Sequence[str]) -> tuple[str, ...]:
    """The directories under the machine's ``/tmp`` that ``texts`` name (for each ``/tmp/…``
    path, the deepest directory of it that exists), at most :data:`MAX_KEPT`. They stay
    reachable behind an attempt's private ``/tmp`` (:class:`View`), so a job, or an MPI
    daemon, handed a path there (a test's, a user's scratch) still finds it."""
    found: dict[str, None] = {}
    for text in texts:
        for match in TMP_PATH.findall(text):
            path = Path(match)
            while not path.is_dir() and path != path.parent:
                path = path.parent
            if str(path) not in ("/", "/tmp"):
                found[str(path)] = None
    return tuple(found)[:MAX_KEPT]


def node_cpus(address: str, vcpus: int, machine: Sequence[int] | None = None) -> tuple[int, ...]:
    """The node's share of the CPUs its agent may use: ``min(vcpus, len(machine))`` of them,
    starting at a place taken from the node's address, so consecutive nodes spread over the
    machine (several nodes share a CPU when their vCPUs add up to more than it has). ``nproc``
    in a job answers this count: the node's vCPUs, never more than the machine's CPUs."""
    cpus = sorted(machine if machine is not None else os.sched_getaffinity(0))
    if not cpus:
        return ()
    last = address.rsplit(".", 1)[-1]
    start = int(last) if last.isdigit() else zlib.crc32(address.encode())
    count = max(1, min(vcpus, len(cpus)))
    return tuple(sorted(cpus[(start + k) % len(cpus)] for k in range(count)))


def spawn_args(
    argv: Sequence[str], name: str | None, account: Account | None, view: View | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The argv and extra ``subprocess.Popen`` arguments that run ``argv`` on the node (in
    namespace ``name``, if any) as ``account`` (None: as the agent).

    With ``view``, the command sees the attempt's view of the node (private ``/tmp``, the
    gang's ``ssh_config``, the node's CPUs: :mod:`launcher.mountns`), made as root in the child
    Popen forks, which also enters the namespace as ``ip netns exec`` would, before it execs
    (a host's root agent has no namespace): a ``preexec_fn`` in the extra arguments.

    Entering a namespace needs the agent's root, so with both a namespace (or a view) and an
    account the ids are switched after it, by ``setpriv`` (util-linux) exec'd before the
    command, instead of by Popen (which switches before the ``preexec_fn``); the umask (077)
    still comes from Popen and is inherited. Every step execs, so the pid Popen returns is
    the command's.
    """
    if name is None and view is None:
        return list(argv), account.popen_kwargs() if account is not None else {}
    extra: dict[str, Any] = {}
    if view is None:
        prefix = exec_prefix(name)
    else:  # the namespace entered and the view made in the forked child (mountns.preexec)
        if name is not None:
            check_namespace(name)
        prefix = []
        extra["preexec_fn"] = mountns.preexec(
            view.tmp, view.keep, view.ssh_config, view.cpus, view.shared, netns=name
        )
    if account is None:
        return [*prefix, *argv], extra
    groups = ",".join(str(g) for g in account.groups)
    switch = [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={account.uid}",
        f"--regid={account.gid}",
        f"--groups={groups}" if groups else "--clear-groups",
        "--",
    ]
    return [*prefix, *switch, *argv], {**extra, "umask": SWITCHED_UMASK}
