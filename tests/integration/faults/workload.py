"""The harness's jobs: definitions, a seeded mix of submissions, and the end each must reach."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnp.client.client import Client

JOB_PY = str(Path(__file__).with_name("job.py"))
QUEUE = "faultq"
CE = "faults"
ARRAY_SIZE = 4
SLEEP_SECONDS = 3.0
"""Long enough that a freeze or an agent crash catches some running."""
RETRY = {
    "attempts": 3,
    "evaluateOnExit": [
        {"onStatusReason": "Host*", "action": "RETRY"},  # a lost node or attempt: run again
        {"onExitCode": "*", "action": "EXIT"},  # the job's own failure is final
    ],
}
MIX: dict[str, float] = {"ok": 0.70, "fail": 0.08, "sleep": 0.10, "array": 0.07, "mnp": 0.05}


@dataclass(frozen=True, slots=True)
class Planned:
    """One submission: its (unique) name, its kind, and the idempotency token it is sent with."""

    name: str
    kind: str
    token: str

    @property
    def expected(self) -> str:
        return "FAILED" if self.kind == "fail" else "SUCCEEDED"

    def request(self) -> dict[str, Any]:
        definition = {"array": "fh-ok"}.get(self.kind, f"fh-{self.kind}")
        body: dict[str, Any] = {"jobName": self.name, "jobQueue": QUEUE}
        body["jobDefinition"] = definition
        if self.kind == "array":
            body["arrayProperties"] = {"size": ARRAY_SIZE}
        return body

    def units(self, job_id: str) -> list[str]:
        """The ids under which this submission's work runs (and writes the ledger)."""
        if self.kind == "array":
            return [f"{job_id}:{i}" for i in range(ARRAY_SIZE)]
        if self.kind == "mnp":
            return [f"{job_id}#0"]
        return [job_id]


def plan(rng: random.Random, seed: int, count: int) -> list[Planned]:
    kinds, weights = list(MIX), list(MIX.values())
    return [
        Planned(f"fh-{seed}-{i}", rng.choices(kinds, weights)[0], f"fh-{seed}-{i}-{rng.random()}")
        for i in range(count)
    ]


def setup(client: Client, ledger: Path) -> None:
    """The UNMANAGED environment the harness's own agents join, its queue, the definitions."""
    client.call(
        "createComputeEnvironment",
        {"computeEnvironmentName": CE, "type": "UNMANAGED", "mnp": {"nodes": 0}},
    )
    client.call(
        "createJobQueue",
        {"jobQueueName": QUEUE, "priority": 1,
         "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": CE}]},
    )  # fmt: skip
    run = [sys.executable, "-I", "-S", JOB_PY, str(ledger)]
    commands = {"ok": [*run, "ok"], "fail": [*run, "fail"],
                "sleep": [*run, "sleep", str(SLEEP_SECONDS)]}  # fmt: skip
    for kind, command in commands.items():
        client.register_job_definition({
            "jobDefinitionName": f"fh-{kind}", "type": "container", "retryStrategy": RETRY,
            "containerProperties": {"command": command},
        })  # fmt: skip
    client.register_job_definition({
        "jobDefinitionName": "fh-mnp", "type": "multinode", "retryStrategy": RETRY,
        "nodeProperties": {
            "numNodes": 2, "mainNode": 0,
            "nodeRangeProperties": [
                {"targetNodes": "0", "container": {"command": commands["ok"]}},
                {"targetNodes": "1", "container": {"command": ["sleep", "60"]}},
            ],
            "mnp": {"mpi": "none", "readyTimeoutSeconds": 20},
        },
    })  # fmt: skip
