"""The node side of multi-node wiring: lay out the files an MNP attempt needs, fill in paths.

See :class:`mnp.spec.protocol.Wiring`. Pure apart from writing the files.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from launcher.accounts import Account, job_python, package_path
from launcher.attempt import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, make_private_dir
from mnp.spec.protocol import PYTHON_PLACEHOLDER, WIRING_PLACEHOLDER, Assignment

HOLD_COMMAND = ["sleep", "infinity"]
"""What a node that runs nothing itself (it serves SSH for the main node) runs until stopped."""


def wiring_dir(workdir: Path) -> Path:
    return workdir / ".mnp"


def prepare(
    assignment: Assignment,
    workdir: Path,
    seen_as: str | None = None,
    account: Account | None = None,
) -> Assignment:
    """Write the wiring files (0600) and return the assignment with every placeholder filled.

    ``seen_as`` is the wiring directory's path as the job sees it (in a container, where the
    working directory is mounted elsewhere); placeholders name that path. With ``account``
    (a switched attempt) the wiring directory and its files (the gang's private key) are that
    account's only, so its job can read them and no one else can. Returns ``assignment``
    unchanged when it has no wiring.
    """
    w = assignment.wiring
    if w is None:
        return assignment
    # the attempt's directory and its wiring (the job's private key): the agent's user only
    directory = make_private_dir(wiring_dir(workdir))
    if account is not None:
        account.give(directory, PRIVATE_DIR_MODE)
    where = seen_as or str(directory)
    for name, text in w.files.items():
        if "/" in name or name in (".", ".."):
            raise ValueError(f"wiring file name {name!r} is not a plain file name")
        path = directory / name
        # never through a link the job may have left in its own directory
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)  # a file left by an earlier try keeps its mode
        if account is not None:
            os.fchown(fd, account.uid, account.gid)
        with os.fdopen(fd, "w") as f:
            f.write(text.replace(WIRING_PLACEHOLDER, where))
        if name.endswith("wrapper"):
            os.chmod(path, 0o700)
    python = job_python(account)
    command = HOLD_COMMAND if w.hold else [fill(a, where, python) for a in assignment.command]
    environment = {k: fill(v, where, python) for k, v in assignment.environment.items()}
    if python != sys.executable and PYTHON_PLACEHOLDER in assignment.command:
        # that Python finds mnp's packages (for launcher.wire) through PYTHONPATH
        extra = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = package_path() + (f":{extra}" if extra else "")
    return replace(
        assignment,
        command=command,
        environment=environment,
        wiring=replace(
            w, ssh_environment={k: fill(v, where, python) for k, v in w.ssh_environment.items()}
        ),
    )


def fill(value: str, where: str, python: str = sys.executable) -> str:
    """``value`` with the wiring directory (and ``python`` for the Python placeholder)."""
    if value == PYTHON_PLACEHOLDER:
        return python
    return value.replace(WIRING_PLACEHOLDER, where)
