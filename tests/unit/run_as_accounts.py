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
def made_accounts(homes: Path | None = None) -> Iterator[dict[str, pwd.struct_passwd]]:
    """Create the accounts, yield them by name, delete them after (also on error).

    Without ``homes`` they have no home; with it each gets ``homes/<name>`` (created, its
    own, removed with the account), e.g. for the client files ``mnp users add`` writes
    there. ``homes`` (created if need be, 0711) must lie in a folder the accounts can pass
    through (see :func:`reachable_dir`)."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create accounts")
    made: list[str] = []
    if homes is not None:
        homes.mkdir(mode=0o711, exist_ok=True)
    try:
        for name in NAMES:
            with contextlib.suppress(KeyError):  # a leftover of an interrupted run
                pwd.getpwnam(name)
                subprocess.run(["userdel", name], check=False, capture_output=True)
            home = ["--no-create-home"]
            if homes is not None:
                home = ["--create-home", "--home-dir", str(homes / name)]
            subprocess.run(
                ["useradd", "--system", *home, "--shell", "/bin/sh", name],
                check=True,
                capture_output=True,
            )
            made.append(name)
        yield {name: pwd.getpwnam(name) for name in NAMES}
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False, capture_output=True)
            if homes is not None:
                shutil.rmtree(homes / name, ignore_errors=True)


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
