"""A real, small disk for tests that fill it: a tmpfs mounted for the test, always unmounted."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """``where`` (created) as a tmpfs of ``size`` (``4m``, ``32m``) for the block's duration;
    unmounted afterwards whatever happens. Skips without root (CI runs as root, and with
    MNP_NO_SKIP=1 a skip fails the run)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
