"""What runs on a node with a network of its own (see :mod:`mnp.providers.netns`).

The agent itself stays in the machine's network namespace — it reaches the head node on
loopback — and puts into the node's namespace only what runs *on* the node:

- listening sockets (the node's SSH endpoint on port 22 of its own address): a socket belongs
  to the namespace it was made in, for good, so :func:`socket_in` switches the calling thread
  into the node's namespace just for the ``socket()`` call and back;
- processes (every attempt's, every SSH session's shell): :func:`exec_prefix` is the argv
  prefix ``ip netns exec <namespace>`` which also bind-mounts the node's
  ``/etc/netns/<namespace>/hosts`` over ``/etc/hosts``, so the other nodes' names resolve.

Python 3.11 has no ``os.setns``; libc's ``setns(2)`` is called through :mod:`ctypes`. Only the
calling thread moves, and it moves back before :func:`socket_in` returns (also on error).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from launcher.accounts import SWITCHED_UMASK, Account

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
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
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
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


def spawn_args(
    argv: Sequence[str], name: str | None, account: Account | None
) -> tuple[list[str], dict[str, Any]]:
    """The argv and extra ``subprocess.Popen`` arguments that run ``argv`` on the node (in
    namespace ``name``, if any) as ``account`` (None: as the agent).

    Entering a namespace needs the agent's root, so with both a namespace and an account
    the ids are switched after it, by ``setpriv`` (util-linux) between ``ip netns exec``
    and the command, instead of by Popen; the umask (077) still comes from Popen and is
    inherited. Every step execs, so the pid Popen returns is the command's.
    """
    if name is None:
        return list(argv), account.popen_kwargs() if account is not None else {}
    prefix = exec_prefix(name)
    if account is None:
        return [*prefix, *argv], {}
    groups = ",".join(str(g) for g in account.groups)
    switch = [
        shutil.which("setpriv") or "setpriv",
        f"--reuid={account.uid}",
        f"--regid={account.gid}",
        f"--groups={groups}" if groups else "--clear-groups",
        "--",
    ]
    return [*prefix, *switch, *argv], {"umask": SWITCHED_UMASK}
