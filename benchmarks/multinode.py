"""Multi-node parallel (MNP) jobs, shared by benchmarks 5 and 6: their definitions, and one
job run to the end."""

from __future__ import annotations

import time

from benchmarks.config import JSON, TERMINAL
from benchmarks.jobs import wait_job
from benchmarks.polling import wait_for
from mnp.client.client import Client


def mnp_definition(name: str, nodes: int, main: list[str], others: list[str] | None, mpi: str,
                   tasks_per_node: int | None = None, timeout_s: int | None = None) -> JSON:
    """A ``type: multinode`` definition: node 0 runs ``main``; nodes ``1:`` run ``others``, or
    nothing when None (they hold and serve SSH to the main node's ``mpiexec``)."""
    ranges: list[JSON] = [{"targetNodes": "0", "container": {"command": main}}]
    if nodes > 1:
        ranges.append({"targetNodes": "1:",
                       "container": {} if others is None else {"command": others}})
    settings: JSON = {"mpi": mpi}
    if tasks_per_node is not None:
        settings["tasksPerNode"] = tasks_per_node
    body: JSON = {
        "jobDefinitionName": name,
        "type": "multinode",
        "nodeProperties": {"numNodes": nodes, "mainNode": 0, "nodeRangeProperties": ranges,
                           "mnp": settings},
    }
    if timeout_s is not None:
        body["timeout"] = {"attemptDurationSeconds": timeout_s}
    return body


def settled_nodes(c: Client, job_id: str, nodes: int, timeout: float = 60) -> list[JSON]:
    """Every node job ``<job_id>#i``, once each is SUCCEEDED or FAILED (its node is free)."""
    ids = [f"{job_id}#{i}" for i in range(nodes)]

    def done() -> list[JSON] | None:
        ds = c.describe_jobs(ids)
        return ds if len(ds) == nodes and all(d["status"] in TERMINAL for d in ds) else None

    return wait_for(f"the {nodes} nodes of {job_id} to settle", done, timeout)


def run_mnp_job(c: Client, definition_name: str, nodes: int, timeout: float = 120,
                poll: float = 0.01) -> tuple[JSON, list[JSON], float]:
    """Submit one MNP job and wait for it: (parent, its node jobs once settled, seconds from
    before ``submitJob`` until ``describeJobs`` says the parent is terminal, polled every
    ``poll`` s). Raises unless everything SUCCEEDED."""
    t0 = time.perf_counter()
    job = c.submit({"jobName": definition_name, "jobQueue": "default",
                    "jobDefinition": definition_name})
    detail = wait_job(c, job, timeout, interval=poll)
    client_s = time.perf_counter() - t0
    node_jobs = settled_nodes(c, job, nodes)
    bad = [d["jobId"] for d in [detail, *node_jobs] if d["status"] != "SUCCEEDED"]
    if bad:
        log = "".join(c.logs(f"{job}#0"))[-3000:]
        raise RuntimeError(f"MNP job {job} ({definition_name}): not SUCCEEDED: {bad} "
                           f"({detail.get('statusReason')}); main node log tail:\n{log}")
    return detail, node_jobs, client_s
