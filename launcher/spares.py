"""Emptied log files, kept for the next attempts of the node.

Every attempt of a plain process gets two log files in its directory, and the agent removes
them when the attempt ends. On ext4 that churn cost the agent dearly for short jobs: a new
inode is found by scanning past the inodes freed in the last minute (``recently_deleted``).
So the agent moves an ended attempt's logs into ``<root>/spare`` and renames them into place
for a later attempt instead of making new ones.

Directories are not kept: an attempt's directory is often its job's working directory, and a
process the job left behind (its own session, out of the kill's reach) may still stand in it;
a reused directory would let that process write into the next job's. Removed, it leaves the
process in a deleted directory where nothing can be created.

Only what is the agent's own is kept (attempts not switched to another account: their jobs
are the agent's user anyway), and a log file only while nothing else has it open (a write
lease, which the kernel grants only then), and emptied, so output of a process left behind
by one job never lands in another's log and no disk is held for what the head has read. A
process that opens the file while the lease is held breaks it: the kernel signals the holder
with :data:`LEASE_BREAK_SIGNAL`, which is ignored by default (SIGIO's default would end the
agent). A new agent starts with an empty stock: what an earlier one left is removed on first
use.

Not thread-safe: call it from the agent's loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import stat
from pathlib import Path

SPARE_DIR = "spare"
SPARE_LIMIT = 128
"""How many files are kept at most (two per attempt that ended)."""
LEASE_BREAK_SIGNAL = signal.SIGURG
"""What the kernel sends the agent when someone opens a file it holds a lease on (``F_SETSIG``):
a signal whose default action is to ignore it, where SIGIO's would kill the agent."""


class Spares:
    """The stock of empty log files under ``<root>/spare``."""

    def __init__(self, root: Path, limit: int = SPARE_LIMIT) -> None:
        self.home = root / SPARE_DIR
        self.limit = limit
        self._files: list[str] = []
        self._made = 0
        self._ready = False

    def take_file(self, path: Path) -> bool:
        """Rename a kept (empty) log file, the agent's, to ``path``, replacing whatever is
        there; the caller opens it with ``O_TRUNC`` all the same. False when none is kept."""
        return self._take(self._files, path)

    def keep_file(self, path: Path) -> bool:
        """Move the log file ``path`` into the stock, emptied, if it is a plain file of the
        agent's with one link that no process has open; False otherwise (remove it as
        usual)."""
        if len(self._files) >= self.limit or not self._ensure():
            return False
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
                return False
            # granted only while no other descriptor of the file is open, anywhere; an open
            # meanwhile breaks it with a signal that is ignored (see the module)
            fcntl.fcntl(fd, fcntl.F_SETSIG, LEASE_BREAK_SIGNAL)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
            spare = self._name()
            try:
                if st.st_size:  # its output is the head's now: no disk held for it here
                    os.ftruncate(fd, 0)
                os.rename(path, spare)  # under the lease: nothing opens it meanwhile
            finally:
                fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        except OSError:
            return False
        finally:
            os.close(fd)
        self._files.append(spare)
        return True

    def _take(self, stock: list[str], path: Path) -> bool:
        while stock:
            spare = stock.pop()
            try:
                os.rename(spare, path)
                return True
            except FileNotFoundError:
                continue  # removed behind the agent's back: try the next
            except OSError:
                _remove(spare)
                return False
        return False

    def _ensure(self) -> bool:
        """Make the (empty) stock's folder on first use, after removing an earlier agent's."""
        if not self._ready:
            shutil.rmtree(self.home, ignore_errors=True)
            try:
                os.mkdir(self.home, 0o700)
                os.chmod(self.home, 0o700)
            except OSError:
                return False
            self._ready = True
        return True

    def _name(self) -> str:
        self._made += 1
        return os.path.join(self.home, str(self._made))


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
