"""``launcher.wire`` end to end: options, layout, wait for the nodes, then exec MPI."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence

from launcher.wire.launch import build_argv, launcher_candidates, resolve_launcher
from launcher.wire.options import (
    ENV_NODE_ALIASES,
    EXIT_CANNOT_EXEC,
    EXIT_NOT_READY,
    EXIT_UNAVAILABLE,
    Layout,
    Options,
    WireError,
    layout_from_env,
    parse_args,
)
from launcher.wire.ready import ssh_probe, wait_until_ready
from mnp.build import mpi


def wait_for_file(path: str, timeout: float, interval: float = 0.01) -> bool:
    """Whether ``path`` exists within ``timeout`` seconds (polled, interval growing to 0.2 s)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)
    return True


def _wait(layout: Layout, options: Options) -> None:
    timeout = options.ready_timeout
    started = time.monotonic()
    if options.ready_file is not None and not wait_for_file(options.ready_file, timeout):
        raise WireError(
            f"the other nodes of the job did not all start within {timeout:g} s "
            f"(no {options.ready_file})",
            EXIT_NOT_READY,
        )
    if not layout.others or not options.probe:
        return
    assert layout.wiring_dir is not None
    cfg = os.path.join(layout.wiring_dir, mpi.SSH_CONFIG_NAME)
    left = max(0.0, timeout - (time.monotonic() - started))
    not_ready = wait_until_ready(layout.others, ssh_probe(cfg), left)
    if not_ready:
        detail = "; ".join(f"{n}: {why}" for n, why in not_ready.items())
        raise WireError(
            f"{len(not_ready)} of {len(layout.others)} nodes never became ready within "
            f"{timeout:g} s ({' '.join(not_ready)}): {detail}",
            EXIT_NOT_READY,
        )
    print(
        f"launcher.wire: {len(layout.others)} nodes ready in {time.monotonic() - started:.2f} s",
        file=sys.stderr,
    )


def run(options: Options, env: Mapping[str, str]) -> int:
    """Do the work of :func:`main`; returns only for ``--dry-run`` (or raises WireError)."""
    no_mpi = options.mpi == "none"
    # Without MPI on one node there is nothing to reach, so no wiring is needed.
    one_node = len(env.get(ENV_NODE_ALIASES, "").split()) == 1
    layout = layout_from_env(env, need_wiring=not (no_mpi and one_node))
    if no_mpi:
        if options.dry_run:
            print("\n".join(options.command))
            return 0
        _wait(layout, options)
        sys.stdout.flush()
        try:
            os.execvp(options.command[0], list(options.command))
        except OSError as e:
            raise WireError(f"cannot run {options.command[0]!r}: {e}", EXIT_CANNOT_EXEC) from None
    mpiexec, flavour_name = resolve_launcher(
        options.mpi, options.mpiexec, launcher_candidates(sys.executable, env.get("PATH", ""))
    )
    argv = build_argv(options, layout, env, mpiexec, flavour_name)
    if options.dry_run:
        print("\n".join(argv))
        return 0
    _wait(layout, options)
    exec_env = dict(env)
    for k, v in mpi.flavour(flavour_name).fixed_env.items():
        exec_env.setdefault(k, v)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, exec_env)
    except OSError as e:
        raise WireError(f"cannot run {argv[0]!r}: {e}", EXIT_UNAVAILABLE) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exec MPI (never returns then) or return an exit code."""
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
        return run(options, os.environ)
    except WireError as e:
        if str(e):
            print(f"launcher.wire: {e}", file=sys.stderr)
        return e.exit_code
