"""A seeded fuzz of all four doors (native API, AWS Batch wire, CloudWatch Logs, agents).

Valid bodies of each family are mutated (wrong types, lone surrogates, NUL, deep nesting,
huge numbers, missing and extra fields, random bytes, truncation) and sent to the real app on
a temp store; the scheduler ticks and the node polls along the way, so whatever was accepted
is also placed, sent and stored. No answer may be a 5xx, then nor on the reads of everything
afterwards. The counts are printed (``-s`` shows them) for the record.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from mnp.service.operations import OPERATIONS
from mnp.spec import protocol
from mnp.spec.protocol import Event, Poll, Register, Report
from tests.unit.doors import Doors

SEED = 11
PER_FAMILY = 800
AWS_NAME = {op.native: op.aws.lower() for op in OPERATIONS if op.aws and not op.tag_method}
AWS_NAME["tagResource"] = "tags/arn%3Aaws%3Abatch%3Alocal%3A0%3Ajob-queue%2Fdefault"

SUBMIT = {
    "jobName": "j",
    "jobQueue": "default",
    "jobDefinition": "d",
    "containerOverrides": {
        "command": ["echo", "hi"],
        "environment": [{"name": "A", "value": "b"}],
        "resourceRequirements": [{"type": "VCPU", "value": "1"}],
    },
    "retryStrategy": {"attempts": 2, "evaluateOnExit": [{"onExitCode": "1", "action": "RETRY"}]},
    "timeout": {"attemptDurationSeconds": 60},
    "tags": {"k": "v"},
    "parameters": {"p": "v"},
    "arrayProperties": {"size": 2},
}
NATIVE: list[tuple[str, dict[str, Any]]] = [
    ("submitJob", SUBMIT),
    (
        "registerJobDefinition",
        {
            "jobDefinitionName": "d2",
            "type": "container",
            "tags": {"a": "b"},
            "containerProperties": {
                "command": ["true"],
                "environment": [{"name": "X", "value": "1"}],
                "resourceRequirements": [{"type": "MEMORY", "value": "64"}],
            },
        },
    ),
    (
        "createJobQueue",
        {
            "jobQueueName": "q2",
            "priority": 1,
            "tags": {"t": "v"},
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
        },
    ),
    ("updateJobQueue", {"jobQueue": "default", "priority": 3, "state": "ENABLED"}),
    (
        "listJobs",
        {
            "jobQueue": "default",
            "jobStatus": "RUNNABLE",
            "maxResults": 10,
            "filters": [{"name": "JOB_NAME", "values": ["j*"]}],
        },
    ),
    ("describeJobs", {"jobs": ["x", "y"]}),
    ("describeJobDefinitions", {"jobDefinitions": ["d:1"], "status": "ACTIVE"}),
    ("describeJobQueues", {"jobQueues": ["default"], "maxResults": 5}),
    ("describeComputeEnvironments", {"computeEnvironments": ["ce"]}),
    (
        "createSchedulingPolicy",
        {
            "name": "p",
            "fairsharePolicy": {
                "shareDecaySeconds": 60,
                "shareDistribution": [{"shareIdentifier": "a", "weightFactor": 1}],
            },
        },
    ),
    ("tagResource", {"resourceArn": "arn:aws:batch:x", "tags": {"a": "b"}}),
    ("cancelJob", {"jobId": "x", "reason": "r"}),
    ("listNodes", {"computeEnvironment": "ce", "includeGone": True}),
    ("createUser", {"name": "alice", "role": "user"}),
    ("deleteUser", {"name": "alice"}),
    ("listUsers", {"maxResults": 5}),
    ("whoAmI", {}),
]
LOGS: list[tuple[str, dict[str, Any]]] = [
    (
        "GetLogEvents",
        {
            "logGroupName": "/aws/batch/job",
            "logStreamName": "d/default/x",
            "startFromHead": True,
            "limit": 10,
            "startTime": 0,
        },
    ),
    (
        "FilterLogEvents",
        {
            "logGroupName": "/aws/batch/job",
            "logStreamNames": ["d/default/x"],
            "filterPattern": "hi",
            "limit": 5,
            "interleaved": True,
        },
    ),
    (
        "DescribeLogStreams",
        {
            "logGroupName": "/aws/batch/job",
            "orderBy": "LogStreamName",
            "descending": True,
            "limit": 3,
        },
    ),
    ("DescribeLogGroups", {"logGroupNamePrefix": "/aws"}),
]
AID = "job-x/1"
AGENT: list[tuple[str, dict[str, Any]]] = [
    (
        protocol.REGISTER_PATH,
        Register("f1", "ce", "127.0.0.5", 2, 512, 0, 9, [AID], 22, "k").to_wire(),
    ),
    (protocol.POLL_PATH, Poll("f1", [AID], 0.0).to_wire()),
    (
        protocol.REPORT_PATH,
        Report(
            "f1",
            [
                Event(AID, "started", 1, seq=1, pid=3),
                Event(AID, "log", 2, seq=2, stream="stdout", offset=0, data="hello\n"),
                Event(AID, "exited", 3, seq=3, exit_code=0),
            ],
        ).to_wire(),
    ),
]

SURROGATE = "\ud800"
NASTY: list[Any] = [
    SURROGATE,
    "a\0b",
    "",
    "x" * 5000,
    10**30,
    -1,
    2**63,
    1.5e308,
    0,
    True,
    None,
    [],
    {},
    [1, "a"],
    {"a": SURROGATE},
    "../../../x",
    "=",
    "AWS_BATCH_X",
    10**18,
]


def deep(n: int) -> Any:
    value: Any = 1
    for _ in range(n):
        value = [value]
    return value


def paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if len(at) > 8:  # inside a deep value put there by an earlier mutation
        return out
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*at, i))
    return out


def mutate(rng: random.Random, body: dict[str, Any]) -> bytes:
    """One mutation of ``body``, serialized (``ensure_ascii`` escapes what UTF-8 cannot)."""
    roll = rng.random()
    if roll < 0.05:
        return rng.randbytes(rng.randint(0, 64))
    text = json.dumps(body).encode()
    if roll < 0.10:
        return text[: rng.randint(0, len(text))]
    b = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(paths(b))
        parent: Any = b
        for part in where[:-1]:
            parent = parent[part]
        choice = rng.random()
        if not where:
            b[rng.choice(["extra", SURROGATE, "a\0"])] = copy.deepcopy(rng.choice(NASTY))
        elif choice < 0.15 and isinstance(parent, dict):
            del parent[where[-1]]
        elif choice < 0.25:
            parent[where[-1]] = deep(rng.choice([63, 65, 200, 1500]))
        elif choice < 0.30 and isinstance(parent, dict):
            parent[rng.choice([SURROGATE, "\0", "", "extra"])] = 1
        else:
            parent[where[-1]] = copy.deepcopy(rng.choice(NASTY))
    try:
        return json.dumps(b).encode()
    except RecursionError:
        return b'{"a": ' + b"[" * 1500 + b"]" * 1500 + b"}"


def test_no_door_answers_5xx_to_mutated_requests(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    doors = Doors(tmp_path / "home")
    counts: Counter[str] = Counter()
    bad: list[str] = []

    def record(family: str, what: str, status: int, text: str) -> None:
        counts["requests"] += 1
        counts[f"{status // 100}xx"] += 1
        if status >= 500:
            bad.append(f"{family} {what} → {status}: {text[:300]}")

    try:
        for name, body in (
            (
                "registerJobDefinition",
                {
                    "jobDefinitionName": "d",
                    "type": "container",
                    "containerProperties": {"command": ["true"]},
                },
            ),
            ("submitJob", SUBMIT),
        ):
            assert doors.native(name, body).status_code == 200
        assert doors.register("n1").status_code == 200
        for i in range(PER_FAMILY):
            op, body = rng.choice(NATIVE)
            r = doors.native(op, mutate(rng, body))
            record("native", op, r.status_code, r.text)
            op, body = rng.choice([(o, b) for o, b in NATIVE if o in AWS_NAME])
            r = doors.aws(AWS_NAME[op], mutate(rng, body))
            record("aws", op, r.status_code, r.text)
            op, body = rng.choice(LOGS)
            r = doors.logs(op, mutate(rng, body))
            record("logs", op, r.status_code, r.text)
            path, body = rng.choice(AGENT)
            r = doors.agent(path, mutate(rng, body))
            record("agent", path, r.status_code, r.text)
            if i % 40 == 0:
                doors.tick()
                r = doors.poll("n1")
                record("agent", "poll n1", r.status_code, r.text)
        doors.tick()
        after = [
            doors.native(op, {})
            for op in (
                "describeJobDefinitions",
                "describeJobQueues",
                "describeComputeEnvironments",
                "listSchedulingPolicies",
                "listNodes",
            )
        ]
        after += [
            doors.native(
                "listJobs",
                {"jobQueue": "default", "filters": [{"name": "JOB_NAME", "values": ["*"]}]},
            )
        ]
        after += [doors.aws(n, {}) for n in ("describejobdefinitions", "describejobqueues")]
        after += [doors.logs("DescribeLogStreams", {"logGroupName": "/aws/batch/job"})]
        after += [doors.poll("n1")]
        for r in after:
            record("read", str(r.request.url), r.status_code, r.text)
            r.json()  # every answer is JSON
        for job in after[5].json()["jobSummaryList"][:100]:
            r = doors.tail(job["jobId"])
            record("read", "tail", r.status_code, r.text)
    finally:
        doors.close()
    print(
        f"\nfuzz (seed {SEED}): {counts['requests']} requests, {counts['2xx']} 2xx, "
        f"{counts['4xx']} 4xx, {counts['5xx']} 5xx"
    )
    assert not bad, "\n".join(bad[:20])
    assert counts["2xx"] > 100  # the mutations leave enough valid requests to reach the service
