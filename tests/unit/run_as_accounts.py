"""Real Unix accounts for the run-as tests (``mnpt-alice``, ``mnpt-bob``), and a node root
they can reach. Needs root (the tests skip otherwise) and ``useradd``/``userdel``."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NAMES = ("mnpt-alice", "mnpt-bob")


@contextlib.contextmanager
def made_accounts() -> Iterator[dict[str, pwd.struct_passwd]]:
    """Create the accounts (no home), yield them by name, delete them after (also on error)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create accounts")
    made: list[str] = []
    try:
        for name in NAMES:
            with contextlib.suppress(KeyError):  # a leftover of an interrupted run
                pwd.getpwnam(name)
                subprocess.run(["userdel", name], check=False, capture_output=True)
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
                check=True,
                capture_output=True,
            )
            made.append(name)
        yield {name: pwd.getpwnam(name) for name in NAMES}
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False, capture_output=True)


@contextlib.contextmanager
def reachable_dir() -> Iterator[Path]:
    """A fresh directory under /tmp (pytest's own tmp is 0700 root: no account could reach
    a node root inside it), removed after."""
    path = Path(tempfile.mkdtemp(prefix="mnpt-"))
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
