"""Process groups, as the node's runtimes and its SSH server see them: every attempt and every
SSH session runs in a group of its own, signalled as a whole."""

from __future__ import annotations

import contextlib
import os


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to the group; nothing when it has gone (or is no longer ours)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
