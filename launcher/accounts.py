"""The account an attempt runs as on this node (``Assignment.run_as``), and handing it files.

Only an agent whose effective uid is 0 can switch accounts; any other agent runs every
attempt as itself and ignores ``run_as`` (as AWS Batch runs a job as its container's user),
saying so once in its log. :func:`account_for` is the one place that decides.

Switching costs: ``subprocess.Popen`` with ``user``/``group``/``extra_groups`` cannot use
vfork, so only attempts that actually switch pay for a full fork.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("launcher.accounts")

SWITCHED_UMASK = 0o077
"""The umask of a switched attempt: what it creates is its own (as ``umask 077``)."""
TRAVERSE_MODE = 0o711
"""Directories above a switched attempt's own ones: passable, never listable."""

_warned_not_root = False


class AccountError(ValueError):
    """``run_as`` names no account on this node."""


@dataclass(frozen=True, slots=True)
class Account:
    """A resolved account: its ids, supplementary groups and home."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def environment(self) -> dict[str, str]:
        """``HOME``, ``USER`` and ``LOGNAME`` as a login of this account sees them."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def popen_kwargs(self) -> dict[str, Any]:
        """The ``subprocess.Popen`` arguments that start a process as this account."""
        return {
            "user": self.uid,
            "group": self.gid,
            "extra_groups": list(self.groups),
            "umask": SWITCHED_UMASK,
        }

    def give(self, path: Path | str, mode: int) -> None:
        """Make ``path`` (not a symlink's target) this account's, with ``mode``."""
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        os.chmod(path, mode)


def can_switch() -> bool:
    """Whether this process may run attempts as other accounts (effective uid 0)."""
    return os.geteuid() == 0


def account_for(run_as: str | None, node_id: str) -> Account | None:
    """The account an attempt with ``run_as`` must switch to; None: run as the agent.

    ``run_as`` is an account name or uid, optionally with ``:group`` (name or gid). None
    when ``run_as`` is None, names the agent's own account, or the agent cannot switch (not
    root: logged once).
    Raises :class:`AccountError` ``no account <run_as> on node <id>`` when the account (or
    a named group) does not exist here.
    """
    global _warned_not_root
    if run_as is None:
        return None
    if not can_switch():
        if not _warned_not_root:
            _warned_not_root = True
            log.warning(
                "the agent is not root: attempts run as its own account, whatever their runAs"
            )
        return None
    name, _, group = run_as.partition(":")
    try:  # written as a container's ``user`` may be: a name or uid, then :group or :gid
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        gid = entry.pw_gid
        if group:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except (KeyError, ValueError, OverflowError):  # ValueError: a NUL in the name
        raise AccountError(f"no account {run_as} on node {node_id}") from None
    if entry.pw_uid == os.geteuid():
        return None
    groups = tuple(os.getgrouplist(entry.pw_name, gid))
    return Account(entry.pw_name, entry.pw_uid, gid, groups, entry.pw_dir or "/")


def impassable(path: Path, account: Account) -> Path | None:
    """The first folder from ``/`` down to ``path`` that ``account`` may not pass (search
    permission for its owner, group or others, as the kernel decides it), or None. A
    switched attempt's files live under the node's root: with a folder above it closed (a
    home under ``/root``, ``/tmp/pytest-of-root``), the account could not reach them."""
    here = Path("/")
    for part in (*path.resolve().parts[1:], None):
        try:
            st = here.stat()
        except FileNotFoundError:
            return None  # the agent makes the rest itself, passable
        except OSError:
            return here
        if st.st_uid == account.uid:
            bit = st.st_mode & 0o100
        elif st.st_gid == account.gid or st.st_gid in account.groups:
            bit = st.st_mode & 0o010
        else:
            bit = st.st_mode & 0o001
        if not bit:
            return here
        if part is None:
            return None
        here = here / part
    return None


def open_as(account: Account, paths: list[str], mode: int = 0o600) -> list[int]:
    """Open (create, truncate) ``paths`` for reading and writing with ``account``'s rights,
    making their missing directories (with those rights too).

    A forked child switches to the account, opens the files and passes the descriptors back
    over a socket: a path the account could not write (or a symlink it planted towards one)
    fails as it would for that user, never with root's rights. Raises OSError naming the
    path. The fork runs no Python code beyond these calls (``os.makedirs`` takes no lock), so the
    agent's threads are safe.
    """
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its outcome is what the parent sees
            _open_in_child(child, account, paths, mode)
        child.close()
        try:
            message, fds, _, _ = socket.recv_fds(parent, 4096, len(paths))
        finally:
            os.waitpid(pid, 0)
        if len(fds) != len(paths):
            for fd in fds:
                os.close(fd)
            raise OSError(message.decode(errors="replace") or "cannot open the output files")
        for fd in fds:
            os.set_inheritable(fd, False)
        return list(fds)
    finally:
        child.close()
        parent.close()


def _open_in_child(sock: socket.socket, account: Account, paths: list[str], mode: int) -> None:
    code = 1
    try:
        os.setgroups(list(account.groups))
        os.setgid(account.gid)
        os.setuid(account.uid)
        for p in paths:  # a missing --output/--error directory, made as the user (as Slurm)
            os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
        fds = [os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode) for p in paths]
        socket.send_fds(sock, [b"ok"], fds)
        code = 0
    except OSError as exc:
        with contextlib.suppress(OSError):
            sock.send(str(exc).encode(errors="replace")[:4000])
    finally:
        os._exit(code)


def can_run(account: Account, path: str) -> bool:
    """Whether ``account`` may execute ``path``: every directory on the way (symlinks
    resolved) passable and the file executable by it (owner, group or other bits)."""
    real = Path(os.path.realpath(path))
    try:
        steps = [*reversed(real.parents), real]
        return all(_allowed(account, os.stat(p), 0o1) for p in steps)
    except OSError:
        return False


def _allowed(account: Account, st: os.stat_result, bit: int) -> bool:
    if st.st_uid == account.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in account.groups:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def job_python(account: Account | None) -> str:
    """The Python a job runs mnp's own tools with (``srun``, ``launcher.wire``): the
    agent's, unless ``account`` cannot run it (e.g. one under root's home), then the
    first ``python3`` on the standard path it can (with :func:`package_path` on its
    ``PYTHONPATH``); the agent's when there is none."""
    if account is None or can_run(account, sys.executable):
        return sys.executable
    for candidate in ("/usr/local/bin/python3", "/usr/bin/python3"):
        if os.path.exists(candidate) and can_run(account, candidate):
            return candidate
    return sys.executable


def package_path() -> str:
    """The directory holding the ``launcher`` and ``mnp`` packages (for ``PYTHONPATH``)."""
    return str(Path(__file__).resolve().parent.parent)
