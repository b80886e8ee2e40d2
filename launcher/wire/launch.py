"""Finding ``mpiexec`` and building the argv that starts the command on every node."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from launcher.wire.options import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    VERSION_TIMEOUT,
    Layout,
    Options,
    WireError,
)
from mnp.build import mpi


def launcher_candidates(executable: str, path: str) -> list[str]:
    """Where to look for ``mpiexec`` when none is given: next to ``executable`` (a pip MPI
    wheel installs it beside python), then every ``PATH`` directory; existing files only,
    each real file once."""
    dirs = [str(Path(executable).parent), *(d for d in path.split(os.pathsep) if d)]
    seen: set[str] = set()
    found = []
    for d in dirs:
        for name in ("mpiexec", "mpirun"):
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                real = os.path.realpath(p)
                if real not in seen:
                    seen.add(real)
                    found.append(p)
    return found


def version_text(mpiexec: str) -> str:
    """``mpiexec --version`` output (stdout and stderr); ``""`` if it cannot be run."""
    try:
        r = subprocess.run(
            [mpiexec, "--version"], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, errors="replace", timeout=VERSION_TIMEOUT,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout + r.stderr


def resolve_launcher(
    choice: str,
    explicit: str | None,
    candidates: Sequence[str],
    version: Callable[[str], str] = version_text,
) -> tuple[str, str]:
    """``(mpiexec path, flavour)``. An explicit path with an explicit flavour is trusted as
    given; otherwise flavours are detected from ``--version``, and with an explicit flavour
    the first candidate of that flavour wins. :class:`WireError` (69) when none fits."""
    if explicit is not None:
        path = shutil.which(explicit) or explicit
        if choice != "auto":
            return path, choice
        text = version(path)
        try:
            return path, mpi.detect_flavour(text)
        except ValueError as e:
            raise WireError(f"{path}: {e}", EXIT_UNAVAILABLE) from None
    seen = []
    for path in candidates:
        try:
            found = mpi.detect_flavour(version(path))
        except ValueError:
            seen.append(f"{path} (unrecognised)")
            continue
        if choice in ("auto", found):
            return path, found
        seen.append(f"{path} ({found})")
    wanted = "an mpiexec" if choice == "auto" else f"a {mpi.flavour(choice).title} mpiexec"
    looked = "; ".join(seen) if seen else "none found next to python or on PATH"
    raise WireError(f"no usable launcher: wanted {wanted}; candidates: {looked}", EXIT_UNAVAILABLE)


# ---- argv ------------------------------------------------------------------------------


def plain_alias(directory: str) -> str:
    """A plain path (see :mod:`mnp.build.mpi`) that is a symlink to ``directory``, inside a fresh
    private (0700) temporary directory so no one else can swap it."""
    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        if mpi.is_plain_path(base) and os.path.isdir(base):
            try:
                private = tempfile.mkdtemp(prefix="mnp-wiring-", dir=base)
            except OSError:
                continue
            link = os.path.join(private, "w")
            os.symlink(directory, link)
            return link
    raise WireError(f"no plain temporary directory to alias {directory!r}", EXIT_UNAVAILABLE)


def build_argv(
    options: Options, layout: Layout, env: Mapping[str, str], mpiexec: str, flavour_name: str
) -> list[str]:
    """The launch argv for this job, aliasing the wiring directory if its path is not one
    the flavour's ssh launcher can take."""
    assert layout.wiring_dir is not None  # layout_from_env(need_wiring=True) checked it
    f = mpi.flavour(flavour_name)
    tasks = layout.tasks_per_node
    ranks = options.np if options.np is not None else len(layout.aliases) * tasks
    capacity = len(layout.aliases) * tasks
    if ranks > capacity and options.hostfile_dir is None:
        raise WireError(
            f"--np {ranks} exceeds {len(layout.aliases)} nodes × {tasks} tasks per node",
            EXIT_USAGE,
        )
    forward = [*layout.forward_env, *options.forward_env]
    missing = [n for n in forward if n not in env]
    if missing:
        print(f"launcher.wire: not forwarding unset {' '.join(missing)}", file=sys.stderr)
    command = list(options.command)
    if "/" not in command[0]:
        command[0] = shutil.which(command[0], path=env.get("PATH")) or command[0]

    def argv_in(wiring: str) -> list[str]:
        return mpi.launch_argv(
            flavour_name,
            mpiexec,
            ranks,
            tasks if options.hostfile_dir is None else None,
            os.path.join(options.hostfile_dir or wiring, f.hostfile_name),
            os.path.join(wiring, mpi.SSH_CONFIG_NAME),
            options.iface or layout.iface,
            command,
            [n for n in forward if n in env],
            ssh_wrapper=os.path.join(wiring, mpi.SSH_WRAPPER_NAME),
        )

    try:
        try:
            return argv_in(layout.wiring_dir)
        except mpi.UnsafePathError:
            return argv_in(plain_alias(layout.wiring_dir))
    except ValueError as e:
        raise WireError(str(e), EXIT_USAGE) from None
