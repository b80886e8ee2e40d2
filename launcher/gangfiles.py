"""The node side of multi-node wiring: lay out the files an MNP attempt needs, fill in paths.

See :class:`mnp.spec.protocol.Wiring`. Pure apart from writing the files.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

from launcher.attempt import make_private_dir
from mnp.spec.protocol import PYTHON_PLACEHOLDER, WIRING_PLACEHOLDER, Assignment

HOLD_COMMAND = ["sleep", "infinity"]
"""What a node that runs nothing itself (it serves SSH for the main node) runs until stopped."""


def wiring_dir(workdir: Path) -> Path:
    return workdir / ".mnp"


def prepare(assignment: Assignment, workdir: Path, seen_as: str | None = None) -> Assignment:
    """Write the wiring files (0600) and return the assignment with every placeholder filled.

    ``seen_as`` is the wiring directory's path as the job sees it (in a container, where the
    working directory is mounted elsewhere); placeholders name that path. Returns
    ``assignment`` unchanged when it has no wiring.
    """
    w = assignment.wiring
    if w is None:
        return assignment
    # the attempt's directory and its wiring (the job's private key): the agent's user only
    directory = make_private_dir(wiring_dir(workdir))
    where = seen_as or str(directory)
    for name, text in w.files.items():
        if "/" in name or name in (".", ".."):
            raise ValueError(f"wiring file name {name!r} is not a plain file name")
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file left by an earlier try keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as f:
            f.write(text.replace(WIRING_PLACEHOLDER, where))
        if name.endswith("wrapper"):
            os.chmod(path, 0o700)
    command = HOLD_COMMAND if w.hold else [fill(a, where) for a in assignment.command]
    return replace(
        assignment,
        command=command,
        environment={k: fill(v, where) for k, v in assignment.environment.items()},
        wiring=replace(
            w, ssh_environment={k: fill(v, where) for k, v in w.ssh_environment.items()}
        ),
    )


def fill(value: str, where: str) -> str:
    if value == PYTHON_PLACEHOLDER:
        return sys.executable
    return value.replace(WIRING_PLACEHOLDER, where)
