"""Waiting until every other node of the job answers over SSH."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence

from launcher.wire.options import FIRST_BACKOFF, MAX_BACKOFF, MIN_PROBE_TIMEOUT, PROBE_TIMEOUT

Probe = Callable[[Sequence[str], float], dict[str, str | None]]
"""Probe ``nodes`` once within ``timeout`` seconds: node → None if ready, else why not."""


def ssh_probe(ssh_config: str, ssh: str = "ssh") -> Probe:
    """A :data:`Probe` running ``ssh -F ssh_config <alias> true`` for all nodes at once."""

    def probe(nodes: Sequence[str], timeout: float) -> dict[str, str | None]:
        limit = max(1, int(timeout))
        procs: dict[str, subprocess.Popen[str] | str] = {}
        for node in nodes:
            argv = [
                ssh, "-F", ssh_config, "-o", "BatchMode=yes", "-o", "ConnectionAttempts=1",
                "-o", f"ConnectTimeout={limit}", node, "true",
            ]  # fmt: skip
            try:
                procs[node] = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True, errors="replace",
                )  # fmt: skip
            except OSError as e:
                procs[node] = f"cannot run {ssh}: {e}"
        out: dict[str, str | None] = {}
        deadline = time.monotonic() + timeout
        for node, proc in procs.items():
            if isinstance(proc, str):
                out[node] = proc
                continue
            try:
                _, stderr = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                out[node] = f"ssh did not answer within {timeout:.1f} s"
                continue
            if proc.returncode == 0:
                out[node] = None
            else:
                lines = [ln for ln in stderr.splitlines() if ln.strip()]
                out[node] = lines[-1] if lines else f"ssh exited with {proc.returncode}"
        return out

    return probe


def wait_until_ready(
    nodes: Sequence[str],
    probe: Probe,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Probe ``nodes`` with backoff until all answer or ``timeout`` seconds pass.

    Returns the nodes that never became ready, each with its last error (empty: all
    ready). Every node is probed at least once, and once more at the deadline: the wait
    overruns ``timeout`` by at most one short probe (:data:`MIN_PROBE_TIMEOUT`).
    """
    deadline = clock() + timeout
    pending = list(nodes)
    errors: dict[str, str] = {}
    backoff = FIRST_BACKOFF
    while pending:
        limit = min(PROBE_TIMEOUT, max(MIN_PROBE_TIMEOUT, deadline - clock()))
        results = probe(pending, limit)
        for node in list(pending):
            error = results.get(node, "not probed")
            if error is None:
                pending.remove(node)
                errors.pop(node, None)
            else:
                errors[node] = error
        remaining = deadline - clock()
        if not pending or remaining <= 0:
            break
        sleep(min(backoff, remaining))
        backoff = min(backoff * 2, MAX_BACKOFF)
    return {n: errors[n] for n in pending}
