"""Benchmark 5's baseline: raw ``mpiexec`` over the very same SSH endpoints an MNP job gets,
timed from inside such a job (``mpi: none``; the other nodes hold and serve SSH)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

from benchmarks.config import JSON
from benchmarks.multinode import mnp_definition, run_mnp_job
from mnp.client.client import Client

RAW_PER_JOB = 3
"""Raw mpiexec runs per command in one baseline job. mnp fails an MNP job as hung once an
MPI proxy on a node has ended and the job goes on for ``mpi_hang_seconds`` (10 s): one job
may not loop over mpiexec for long, so the raw runs are spread over several short jobs."""

RAW_MPIEXEC = r'''
"""Raw mpiexec over the job's own SSH endpoints, timed: runs as an MNP job's main node
(mpi none) while the other nodes hold. argv: iterations, JSON {kind: command}."""
import json, os, shutil, signal, subprocess, sys, tempfile, time
from mnp.build import mpi

signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: still remove the copy

iterations = int(sys.argv[1])
commands = json.loads(sys.argv[2])
src = os.environ["MNP_WIRING_DIR"]
nodes = len(os.environ["MNP_NODE_ALIASES"].split())
tasks = int(os.environ["MNP_TASKS_PER_NODE"])
iface = os.environ.get("MNP_MPI_IFACE") or None
mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
dst = tempfile.mkdtemp(prefix="mnp-bench-raw-")  # a private, plain path
try:
    # (a) a copy of the wiring the main node got, pointing at itself
    for name in ("ssh_config", "known_hosts", "id_ed25519", "hostfile.mpich", "ssh-wrapper"):
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    cfg = os.path.join(dst, "ssh_config")
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace(src, dst))

    def argv(command):
        return mpi.launch_argv("mpich", mpiexec, nodes * tasks, tasks,
                               os.path.join(dst, "hostfile.mpich"), cfg, iface, command, [],
                               ssh_wrapper=os.path.join(dst, "ssh-wrapper"))

    def norm(args, directory):
        real = os.path.realpath(directory)
        return ["<wiring>/" + os.path.basename(a)
                if a.startswith("/") and os.path.realpath(os.path.dirname(a)) == real else a
                for a in args]

    def wire_dry_run(command):
        """What mnp itself would exec (launcher.wire --dry-run), and how long that took."""
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "launcher.wire", "--mpi", "mpich",
                              "--dry-run", "--", *command], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, check=True).stdout.splitlines()
        elapsed = time.perf_counter() - t0
        for a in out:  # a plain alias launcher.wire made for a non-plain wiring path
            d = os.path.dirname(a)
            if os.path.islink(d) and os.path.basename(os.path.dirname(d)).startswith("mnp-wiring-"):
                shutil.rmtree(os.path.dirname(d), ignore_errors=True)
        return out, elapsed

    same = {}
    for kind, command in commands.items():
        same[kind] = {"mnp": norm(wire_dry_run(command)[0], src),
                      "raw": norm(argv(command), dst)}
    # (b) the same mpiexec, timed; also launcher.wire's own start (interpreter, imports,
    # mpiexec --version, argv), without its wait for the nodes and its exec
    times = {kind: [] for kind in commands}
    times["wire_dry_run"] = []
    for i in range(iterations):
        times["wire_dry_run"].append(wire_dry_run(next(iter(commands.values())))[1])
        for kind, command in commands.items():
            args = argv(command)
            sys.stdout.flush()
            t0 = time.perf_counter()
            rc = subprocess.run(args, stdin=subprocess.DEVNULL).returncode
            elapsed = time.perf_counter() - t0
            if rc != 0:
                print(f"raw mpiexec ({kind}) exited with {rc}: {args}", file=sys.stderr)
                sys.exit(1)
            times[kind].append(elapsed)
    print("RAW_RESULT " + json.dumps({"times_s": times, "argv": same}))
finally:
    shutil.rmtree(dst, ignore_errors=True)
'''


class RawMpiexec:
    """Baseline jobs on one head, each timing raw ``mpiexec`` of every command of
    ``commands`` on ``nodes`` nodes, ``tasks_per_node`` ranks each; a job definition per
    iteration count, registered on first use."""

    def __init__(self, c: Client, nodes: int, tasks_per_node: int,
                 commands: Mapping[str, list[str]]) -> None:
        self.c = c
        self.nodes = nodes
        self.tasks_per_node = tasks_per_node
        self.commands = dict(commands)
        self._registered: set[int] = set()

    def run(self, iterations: int) -> tuple[JSON, float]:
        """One baseline MNP job (mpi none; children hold) whose main node times raw
        ``mpiexec`` ``iterations`` times per command; (its RAW_RESULT, seconds the whole job
        took). Raises if the job failed or printed no RAW_RESULT."""
        c = self.c
        name = f"mnp-raw-{iterations}"
        if iterations not in self._registered:
            c.register_job_definition(mnp_definition(
                name, self.nodes, [sys.executable, "-c", RAW_MPIEXEC, str(iterations),
                                   json.dumps(self.commands)],
                None, "none", self.tasks_per_node, 300))
            self._registered.add(iterations)
        detail, _nodes, client_s = run_mnp_job(c, name, self.nodes, timeout=300)
        log = "".join(c.logs(f"{detail['jobId']}#0"))
        for line in log.splitlines():
            if line.startswith("RAW_RESULT "):
                return json.loads(line.split(" ", 1)[1]), client_s
        raise RuntimeError(f"raw mpiexec job {detail['jobId']}: no RAW_RESULT in\n{log[-3000:]}")
