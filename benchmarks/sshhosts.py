#!/usr/bin/env python
"""Bring-up of SSH hosts of an UNMANAGED environment, in parallel versus one at a time.

``python benchmarks/sshhosts.py [--hosts N] [--rounds R]`` (root, ``ip netns`` and
openssh-server): per round and setting, on a fresh head with no nodes of its own
(``tests.integration.sshhosts.ssh_cluster``: an UNMANAGED environment, N namespace hosts each
running a real OpenSSH ``sshd``, reached through a ProxyCommand into the hub), the N hosts
are added with N ``addHost`` calls at once (key pinned, vCPUs and memory detected) and
``listHosts`` is polled every 20 ms until all are ACTIVE: probe, agent install, reverse
tunnel and agent start over ssh, then the agent's join. Measured, client-observed, from
before the first ``addHost`` call (made once the machine is under 25% busy, up to 60 s):
the time until all N are ACTIVE, and until each one is.
The setting is the head's ``host_bringup_threads`` (``$MNP_HOST_BRINGUP_THREADS``): N
(parallel) and 1 (serial, the baseline), alternating which goes first round by round; the
spread between the first and the last host ACTIVE shows the setting took effect. Medians
over the rounds; writes ``results-sshhosts.json`` (the benchmarks README shows it). The
head, sshd, agents and namespaces of every round are stopped and removed by PID
(``ssh_cluster``), also on failure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: the checkout's packages, not installed ones
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cpu import wait_quiet
from benchmarks.polling import Abort, wait_for
from benchmarks.report import save_standalone
from mnp.config import HOST_BRINGUP_ENV
from mnp.providers import netns, sshbundle
from tests.integration.sshhosts import add_body, ssh_cluster

JSON = dict[str, Any]
RESULTS = Path(__file__).resolve().parent / "results-sshhosts.json"
CE = "sshbench"
POLL_S = 0.02


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _agent_there() -> bool:
    """Whether this machine's ``~/.mnp-node`` already holds the head's agent files (the test
    hosts share it, and so do SSH tests running meanwhile): then no host copies them."""
    bundle = sshbundle.current()
    stamp = Path.home() / ".mnp-node" / "agent" / bundle.version / "DIGEST"
    try:
        return stamp.read_text().strip() == bundle.digest
    except OSError:
        return False


def bringup_round(scratch: Path, hosts_n: int, threads: int, timeout: float) -> JSON:
    """One round: a fresh head with ``host_bringup_threads = threads`` and ``hosts_n`` fresh
    namespace hosts; the times from the ``addHost`` calls until each host is ACTIVE."""
    root = Path(tempfile.mkdtemp(dir=scratch, prefix=f"t{threads}-"))
    before = os.environ.get(HOST_BRINGUP_ENV)
    os.environ[HOST_BRINGUP_ENV] = str(threads)  # the head's environment (Cluster passes ours)
    try:
        with ssh_cluster(root, CE) as (cluster, hosts):
            made = [hosts.add(f"h{i}") for i in range(hosts_n)]
            c = cluster.client
            busy = wait_quiet()  # not in the middle of someone else's work
            installed = _agent_there()
            t0 = time.perf_counter()
            for h in made:
                c.call("addHost", add_body(hosts, CE, h))
            add_calls_s = time.perf_counter() - t0
            active: dict[str, float] = {}

            def all_active() -> bool:
                listed = c.call("listHosts", {"computeEnvironment": CE})["hosts"]
                now = time.perf_counter() - t0
                for h in listed:
                    if h["status"] == "FAILED":  # its retry would wait out a backoff
                        raise Abort(f"host {h['name']} FAILED: {h.get('statusReason')}")
                    if h["status"] == "ACTIVE":
                        active.setdefault(h["name"], now)
                return len(active) == hosts_n

            wait_for(f"{hosts_n} hosts ACTIVE", all_active, timeout, interval=POLL_S)
            per_host = sorted(active.values())
    finally:
        if before is None:
            os.environ.pop(HOST_BRINGUP_ENV, None)
        else:
            os.environ[HOST_BRINGUP_ENV] = before
    return {"threads": threads, "all_active_s": round(per_host[-1], 3),
            "per_host_s": [round(t, 3) for t in per_host],
            "add_calls_s": round(add_calls_s, 3), "busy_before_pct": busy,
            "agent_files_there_before": installed}  # fmt: skip


def _summary(rows: list[JSON]) -> JSON:
    every_host = [t for r in rows for t in r["per_host_s"]]
    return {"threads": rows[0]["threads"],
            "median_all_active_s": round(statistics.median(r["all_active_s"] for r in rows), 3),
            "median_per_host_s": round(statistics.median(every_host), 3),
            "median_first_active_s": round(statistics.median(r["per_host_s"][0] for r in rows),
                                           3),
            "median_add_calls_s": round(statistics.median(r["add_calls_s"] for r in rows), 3),
            "median_spread_s": round(statistics.median(
                r["per_host_s"][-1] - r["per_host_s"][0] for r in rows), 3),
            "max_busy_before_pct": max(r["busy_before_pct"] for r in rows),
            "rounds_agent_files_there": sum(r["agent_files_there_before"] for r in rows),
            "rounds": rows}  # fmt: skip


def _leftover_namespaces() -> list[str]:
    """The namespaces of this run's host networks still there (``mnp-s<pid>-…``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    prefix = f"mnp-s{os.getpid() % 100000}-"
    return [n.split()[0] for n in out.stdout.splitlines() if n.startswith(prefix)]


def run(scratch: Path, hosts_n: int, rounds: int, timeout: float) -> JSON:
    """``rounds`` rounds of both settings; medians and the ratio serial ÷ parallel."""
    runs: dict[int, list[JSON]] = {hosts_n: [], 1: []}
    for r in range(rounds):
        order = [hosts_n, 1] if r % 2 == 0 else [1, hosts_n]
        for threads in order:
            _say(f"round {r + 1}/{rounds}: {hosts_n} hosts, host_bringup_threads={threads}")
            got = bringup_round(scratch, hosts_n, threads, timeout)
            runs[threads].append(got)
            _say(f"  all ACTIVE {got['all_active_s']:.2f} s, each {got['per_host_s']}")
    par, ser = _summary(runs[hosts_n]), _summary(runs[1])
    p, s = par["median_all_active_s"], ser["median_all_active_s"]
    return {"hosts": hosts_n, "rounds": rounds, "cpus": os.cpu_count(), "poll_s": POLL_S,
            "parallel": par, "serial": ser,
            "serial_to_parallel_ratio": round(s / p, 2) if p else None,
            "namespaces_left": _leftover_namespaces()}  # fmt: skip


def table(results: JSON) -> str:
    """The README's table of :func:`run`'s results."""
    p, s, n = results["parallel"], results["serial"], results["hosts"]
    return "\n".join([
        f"| measurement (median) | parallel (`host_bringup_threads` {p['threads']}) "
        "| serial (1) | serial ÷ parallel |",
        "|---|---|---|---|",
        f"| {n} `addHost` calls → all {n} hosts ACTIVE | {p['median_all_active_s']:.2f} s "
        f"| {s['median_all_active_s']:.2f} s | {results['serial_to_parallel_ratio']} |",
        f"| `addHost` calls → one host ACTIVE (every host of every round) "
        f"| {p['median_per_host_s']:.2f} s | {s['median_per_host_s']:.2f} s | |",
        f"| `addHost` calls → first host ACTIVE | {p['median_first_active_s']:.2f} s "
        f"| {s['median_first_active_s']:.2f} s | |",
        f"| the {n} `addHost` calls themselves | {p['median_add_calls_s'] * 1000:.0f} ms "
        f"| {s['median_add_calls_s'] * 1000:.0f} ms | |",
        f"| first host ACTIVE → last host ACTIVE | {p['median_spread_s']:.2f} s "
        f"| {s['median_spread_s']:.2f} s | |",
        f"| machine busy just before the calls (highest of the rounds) "
        f"| {p['max_busy_before_pct']:.0f}% | {s['max_busy_before_pct']:.0f}% | |",
        f"| rounds whose hosts found the agent's files already there "
        f"| {p['rounds_agent_files_there']} of {len(p['rounds'])} "
        f"| {s['rounds_agent_files_there']} of {len(s['rounds'])} | |",
    ]) + "\n"  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--hosts", type=int, default=8, help="hosts, and the parallel setting")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=180.0, help="per round (s)")
    ap.add_argument("--scratch", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=RESULTS, help="results JSON")
    args = ap.parse_args()
    if not netns.available() or not Path("/usr/sbin/sshd").exists():
        print("needs root, ip netns and openssh-server (/usr/sbin/sshd)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        results = run(Path(tmp), args.hosts, args.rounds, args.timeout)
    save_standalone(results, t0, args.output, table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
