"""The real ``Service`` + ``Scheduler`` in-process: temp SQLite, fake clock, UNMANAGED nodes
registered by hand, and the same register/poll/report calls the HTTP layer makes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import Conflict, InvalidInput, NotFound
from mnp.nodes.sessions import StaleSession
from mnp.scheduler.attempts import TIMEOUT_REASON
from mnp.spec.jobs import NEVER_FITS
from mnp.spec.protocol import Assignment
from tests.unit.helpers_core import HOSTILE, Head, row_counts

LOST_AFTER = 10.0


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "head home; 'q' \"qq\" $HOME"


@pytest.fixture
def head(home: Path) -> Iterator[Head]:
    h = Head.open(home, lost_after_seconds=LOST_AFTER)
    yield h
    h.close()


@pytest.fixture
def ready(head: Head) -> Head:
    """Environment ``ce`` (UNMANAGED), queue ``q``, definition ``def``, node ``n1`` (4 vCPUs)."""
    head.basic(("n1",))
    return head


def start_all(h: Head, node_id: str = "n1") -> list[Assignment]:
    """Tick until ``node_id`` has work, then start every assignment it got."""
    for _ in range(4):
        h.ticks(1)
        assignments, _ = h.poll(node_id)
        if assignments:
            for a in assignments:
                h.started(node_id, a.attempt_id)
            return assignments
    raise AssertionError(f"no work for {node_id}")


def statuses(history: list[dict[str, Any]]) -> list[str]:
    return [h["status"] for h in history]


def invalid_paths(call: Any, body: dict[str, Any]) -> set[str]:
    with pytest.raises(InvalidInput) as err:
        call(body)
    return {e.path for e in err.value.errors}


# --- job definitions --------------------------------------------------------------------------


def test_register_creates_revision_n_plus_1(head: Head) -> None:
    answers = [head.definition("d", command=["echo", str(i)]) for i in range(3)]
    assert [a["revision"] for a in answers] == [1, 2, 3]
    assert answers[2]["jobDefinitionArn"].endswith(":job-definition/d:3")
    assert head.definition("other")["revision"] == 1
    described = head.api["describeJobDefinitions"]({"jobDefinitionName": "d"})
    assert [(d["revision"], d["status"]) for d in described["jobDefinitions"]] == [
        (1, "ACTIVE"),
        (2, "ACTIVE"),
        (3, "ACTIVE"),
    ]
    assert described["jobDefinitions"][1]["containerProperties"]["command"] == ["echo", "1"]


def test_deregister_makes_inactive_and_bare_name_means_latest_active(ready: Head) -> None:
    ready.definition("def", command=["two"])
    ready.definition("def", command=["three"])
    ready.api["deregisterJobDefinition"]({"jobDefinition": "def:3"})
    described = ready.api["describeJobDefinitions"]({"jobDefinitionName": "def"})
    assert [d["status"] for d in described["jobDefinitions"]] == ["ACTIVE", "ACTIVE", "INACTIVE"]
    only_inactive = ready.api["describeJobDefinitions"](
        {"jobDefinitionName": "def", "status": "INACTIVE"}
    )
    assert [d["revision"] for d in only_inactive["jobDefinitions"]] == [3]

    job = ready.submit(jobDefinition="def")
    assert ready.describe(job)["jobDefinition"].endswith("job-definition/def:2")
    assert ready.describe(job)["container"]["command"] == ["two"]
    arn = ready.describe(job)["jobDefinition"].replace(":2", ":1")
    assert ready.describe(ready.submit(jobDefinition=arn))["container"]["command"] == [
        "run",
        "Ref::msg",
    ]
    assert invalid_paths(
        ready.api["submitJob"],
        {
            "jobName": "j",
            "jobQueue": "q",
            "jobDefinition": "def:3",
        },
    ) == {"jobDefinition"}

    ready.api["deregisterJobDefinition"]({"jobDefinition": "def:1"})
    ready.api["deregisterJobDefinition"]({"jobDefinition": "def:2"})
    assert invalid_paths(
        ready.api["submitJob"],
        {
            "jobName": "j",
            "jobQueue": "q",
            "jobDefinition": "def",
        },
    ) == {"jobDefinition"}
    with pytest.raises(NotFound):
        ready.api["deregisterJobDefinition"]({"jobDefinition": "def:9"})


# --- queues -----------------------------------------------------------------------------------


def test_disabled_queue_refuses_submissions(ready: Head) -> None:
    ready.api["updateJobQueue"]({"jobQueue": "q", "state": "DISABLED"})
    before = row_counts(ready.db_path)
    with pytest.raises(InvalidInput) as err:
        ready.submit()
    assert [(e.path, e.message) for e in err.value.errors] == [
        ("jobQueue", "job queue 'q' is DISABLED")
    ]
    assert row_counts(ready.db_path) == before
    ready.api["updateJobQueue"]({"jobQueue": "q", "state": "ENABLED"})
    assert ready.status(ready.submit()) == "SUBMITTED"


def test_unknown_queue_and_definition_are_reported_together(ready: Head) -> None:
    body = {"jobName": "j", "jobQueue": "nope", "jobDefinition": "nope"}
    assert invalid_paths(ready.api["submitJob"], body) == {"jobQueue", "jobDefinition"}


# --- what the job runs ------------------------------------------------------------------------


def test_ref_parameters_are_substituted_in_the_command_only(ready: Head) -> None:
    ready.definition(
        "params",
        command=["echo", "Ref::msg", "--other=Ref::other", "Ref::missing", "Ref::msg"],
        parameters={"msg": "default", "other": "from-definition"},
        containerProperties={"environment": [{"name": "ECHO", "value": "Ref::msg"}]},
    )
    job = ready.submit(jobDefinition="params", parameters={"msg": HOSTILE})
    a = start_all(ready)[0]
    assert a.command == ["echo", HOSTILE, "--other=from-definition", "Ref::missing", HOSTILE]
    assert a.environment["ECHO"] == "Ref::msg"
    assert ready.describe(job)["parameters"] == {"msg": HOSTILE, "other": "from-definition"}


def test_overrides_of_command_environment_resources_retry_and_timeout(ready: Head) -> None:
    ready.definition(
        "over",
        command=["original"],
        retryStrategy={"attempts": 1},
        timeout={"attemptDurationSeconds": 600},
        containerProperties={
            "environment": [{"name": "KEEP", "value": "k"}, {"name": "CHANGE", "value": "old"}]
        },
    )
    job = ready.submit(
        jobDefinition="over",
        containerOverrides={
            "command": ["sh", "-c", HOSTILE],
            "environment": [
                {"name": "CHANGE", "value": HOSTILE},
                {"name": "NEW VAR", "value": "$HOME"},
            ],
            "resourceRequirements": [
                {"type": "VCPU", "value": "2"},
                {"type": "MEMORY", "value": "1024"},
            ],
        },
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"onExitCode": "3", "action": "EXIT"}]},
        timeout={"attemptDurationSeconds": 90},
    )
    detail = ready.describe(job)
    assert detail["container"]["resourceRequirements"] == [
        {"type": "VCPU", "value": "2"},
        {"type": "MEMORY", "value": "1024"},
    ]
    assert detail["retryStrategy"] == {
        "attempts": 2,
        "evaluateOnExit": [{"onExitCode": "3", "action": "exit"}],  # lower-cased, as AWS answers
    }
    assert detail["timeout"] == {"attemptDurationSeconds": 90}
    a = start_all(ready)[0]
    assert a.command == ["sh", "-c", HOSTILE]
    assert a.timeout_seconds == 90
    assert (a.environment["KEEP"], a.environment["CHANGE"], a.environment["NEW VAR"]) == (
        "k",
        HOSTILE,
        "$HOME",
    )


def test_timeout_below_the_floor_is_refused(ready: Head) -> None:
    body = {
        "jobName": "j",
        "jobQueue": "q",
        "jobDefinition": "def",
        "timeout": {"attemptDurationSeconds": 59},
    }
    assert invalid_paths(ready.api["submitJob"], body) == {"timeout.attemptDurationSeconds"}
    with pytest.raises(InvalidInput):
        ready.definition("short", timeout={"attemptDurationSeconds": 30})


def test_job_environment_has_the_aws_batch_variables(ready: Head) -> None:
    job = ready.submit()
    a = start_all(ready)[0]
    assert a.job_id == job
    assert a.attempt_id == f"{job}/1"
    env = a.environment
    assert env["AWS_BATCH_JOB_ID"] == job
    assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert env["AWS_BATCH_JQ_NAME"] == "q"
    assert env["AWS_BATCH_CE_NAME"] == "ce"
    assert "AWS_BATCH_JOB_ARRAY_INDEX" not in env


def test_array_children_get_index_and_size(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 3})
    got = sorted(start_all(ready), key=lambda a: a.job_id)
    assert [a.job_id for a in got] == [f"{parent}:{i}" for i in range(3)]
    for i, a in enumerate(got):
        assert a.environment["AWS_BATCH_JOB_ID"] == f"{parent}:{i}"
        assert a.environment["AWS_BATCH_JOB_ARRAY_INDEX"] == str(i)
        assert a.environment["AWS_BATCH_JOB_ARRAY_SIZE"] == "3"


# --- arrays -----------------------------------------------------------------------------------


def summary(h: Head, job_id: str) -> dict[str, int]:
    s: dict[str, int] = h.describe(job_id)["arrayProperties"]["statusSummary"]
    return {k: v for k, v in s.items() if v}


def test_array_parent_lifecycle_when_every_child_succeeds(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 3})
    ready.ticks(1)
    assert ready.status(parent) == "PENDING"
    assert summary(ready, parent) == {"PENDING": 3}
    child0 = ready.describe(f"{parent}:0")
    assert child0["status"] == "PENDING"
    assert child0["arrayProperties"] == {"index": 0, "size": 3}

    got = start_all(ready)
    assert summary(ready, parent) == {"RUNNING": 3}
    ready.clock.advance(5)
    ready.exited("n1", got[0].attempt_id, 0)
    assert summary(ready, parent) == {"RUNNING": 2, "SUCCEEDED": 1}
    detail = ready.describe(parent)
    assert detail["arrayProperties"]["statusSummaryLastUpdatedAt"] == ready.clock()
    for a in got[1:]:
        ready.exited("n1", a.attempt_id, 0)
    detail = ready.describe(parent)
    assert detail["status"] == "SUCCEEDED"
    assert summary(ready, parent) == {"SUCCEEDED": 3}
    assert statuses(detail["history"]) == ["SUBMITTED", "PENDING", "SUCCEEDED"]


def test_array_parent_fails_when_one_child_fails(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 3})
    got = start_all(ready)
    ready.exited("n1", got[0].attempt_id, 0)
    ready.exited("n1", got[1].attempt_id, 1)
    assert ready.status(parent) == "PENDING", "the parent ends only when every child has"
    ready.exited("n1", got[2].attempt_id, 0)
    detail = ready.describe(parent)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == "ARRAY:CHILD_FAILED - 1 of 3 child jobs failed"
    assert summary(ready, parent) == {"SUCCEEDED": 2, "FAILED": 1}
    assert "RUNNABLE" not in statuses(detail["history"])
    assert "RUNNING" not in statuses(detail["history"])


def test_depending_on_an_array_parent_waits_for_the_whole_array(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 2})
    after = ready.submit("after", dependsOn=[{"jobId": parent}])
    got = start_all(ready)
    assert len(got) == 2
    ready.exited("n1", got[0].attempt_id, 0)
    ready.ticks(2)
    assert ready.status(after) == "PENDING"
    ready.exited("n1", got[1].attempt_id, 0)
    ready.ticks(1)
    assert ready.status(after) == "RUNNABLE"


def test_sequential_children_run_one_at_a_time(ready: Head) -> None:
    parent = ready.submit("seq", arrayProperties={"size": 3}, dependsOn=[{"type": "SEQUENTIAL"}])
    for i in range(3):
        got = start_all(ready)
        assert [a.job_id for a in got] == [f"{parent}:{i}"]
        ready.ticks(2)
        assert ready.poll("n1")[0] == []
        ready.exited("n1", got[0].attempt_id, 0)
    assert ready.status(parent) == "SUCCEEDED"


def test_n_to_n_child_waits_for_the_matching_child(ready: Head) -> None:
    first = ready.submit("first", arrayProperties={"size": 2})
    got = {a.job_id: a for a in start_all(ready)}
    second = ready.submit(
        "second", arrayProperties={"size": 2}, dependsOn=[{"jobId": first, "type": "N_TO_N"}]
    )
    ready.exited("n1", got[f"{first}:1"].attempt_id, 0)
    ready.ticks(3)
    assert ready.status(f"{second}:1") in ("RUNNABLE", "STARTING")
    assert ready.status(f"{second}:0") == "PENDING"


def test_a_failed_dependency_fails_the_dependent(ready: Head) -> None:
    first = ready.submit("first")
    waiting = ready.submit("waiting", dependsOn=[{"jobId": first}])
    a = start_all(ready)[0]
    ready.ticks(1)
    assert ready.status(waiting) == "PENDING"
    ready.exited("n1", a.attempt_id, 1)
    assert ready.status(first) == "FAILED"
    ready.ticks(1)
    detail = ready.describe(waiting)
    assert detail["status"] == "FAILED"
    assert first in detail["statusReason"]
    late = ready.submit("late", dependsOn=[{"jobId": first}])
    ready.ticks(1)
    assert ready.status(late) == "FAILED"
    assert first in ready.describe(late)["statusReason"]


def test_dependency_on_an_unknown_job_is_refused(ready: Head) -> None:
    body = {
        "jobName": "j",
        "jobQueue": "q",
        "jobDefinition": "def",
        "dependsOn": [{"jobId": "no-such-job"}],
    }
    assert invalid_paths(ready.api["submitJob"], body) == {"dependsOn[0].jobId"}


# --- retries and timeouts ---------------------------------------------------------------------


def test_retries_follow_evaluate_on_exit_and_count_attempts(ready: Head) -> None:
    retry = {
        "attempts": 4,
        "evaluateOnExit": [
            {"onExitCode": "1*", "action": "RETRY"},
            {"onReason": "*", "action": "EXIT"},
        ],
    }
    job = ready.submit(retryStrategy=retry)
    seen = []
    for code in (1, 137):
        a = start_all(ready)[0]
        seen.append(a.environment["AWS_BATCH_JOB_ATTEMPT"])
        ready.clock.advance(1)
        ready.exited("n1", a.attempt_id, code)
        assert ready.status(job) == "RUNNABLE"
    a = start_all(ready)[0]
    seen.append(a.environment["AWS_BATCH_JOB_ATTEMPT"])
    assert a.attempt_id == f"{job}/3"
    ready.exited("n1", a.attempt_id, 2)
    detail = ready.describe(job)
    assert seen == ["1", "2", "3"]
    assert detail["status"] == "FAILED", "exit 2 matches the EXIT rule"
    assert [x["container"]["exitCode"] for x in detail["attempts"]] == [1, 137, 2]
    assert all(x["statusReason"] for x in detail["attempts"])
    assert statuses(detail["history"]).count("RUNNING") == 3


def test_attempts_exhausted_fails(ready: Head) -> None:
    job = ready.submit(retryStrategy={"attempts": 2})
    for _ in range(2):
        ready.exited("n1", start_all(ready)[0].attempt_id, 5)
    detail = ready.describe(job)
    assert detail["status"] == "FAILED"
    assert len(detail["attempts"]) == 2


def test_a_timed_out_attempt_is_never_retried(ready: Head) -> None:
    job = ready.submit(retryStrategy={"attempts": 5}, timeout={"attemptDurationSeconds": 60})
    a = start_all(ready)[0]
    assert a.timeout_seconds == 60
    ready.clock.advance(61)
    ready.exited("n1", a.attempt_id, 143, timed_out=True, reason="Timeout")
    ready.ticks(3)
    detail = ready.describe(job)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == TIMEOUT_REASON
    assert len(detail["attempts"]) == 1
    assert detail["attempts"][0]["container"] == {
        "exitCode": 143,
        "reason": "Timeout",
        "logStreamName": detail["attempts"][0]["container"]["logStreamName"],
    }


# --- cancel and terminate ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["SUBMITTED", "PENDING", "RUNNABLE"])
@pytest.mark.parametrize("op", ["cancelJob", "terminateJob"])
def test_cancel_or_terminate_before_starting_fails_the_job(
    ready: Head, stage: str, op: str
) -> None:
    blocker = ready.submit("blocker")
    deps = [{"jobId": blocker}] if stage == "PENDING" else []
    job = ready.submit(dependsOn=deps) if deps else ready.submit()
    if stage != "SUBMITTED":
        ready.ticks(1)
    assert ready.status(job) == stage
    ready.api[op]({"jobId": job, "reason": HOSTILE})
    detail = ready.describe(job)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == HOSTILE
    assert detail["isCancelled"] is (op == "cancelJob")
    assert detail["isTerminated"] is (op == "terminateJob")
    ready.ticks(3)
    assert ready.status(job) == "FAILED"
    assert detail["attempts"] == []


def test_cancel_of_a_running_job_is_a_no_op(ready: Head) -> None:
    job = ready.submit()
    a = start_all(ready)[0]
    assert ready.api["cancelJob"]({"jobId": job, "reason": "stop"}) == {}
    assert ready.poll("n1") == ([], [])
    detail = ready.describe(job)
    assert (detail["status"], detail["isCancelled"]) == ("RUNNING", False)
    ready.exited("n1", a.attempt_id, 0)
    assert ready.status(job) == "SUCCEEDED"


def test_cancel_and_terminate_of_unknown_jobs_answer_ok(ready: Head) -> None:
    assert ready.api["cancelJob"]({"jobId": "nope", "reason": "r"}) == {}
    assert ready.api["terminateJob"]({"jobId": "nope", "reason": "r"}) == {}
    assert invalid_paths(ready.api["cancelJob"], {"jobId": "x", "reason": ""}) == {"reason"}


def test_terminate_of_a_running_job_kills_and_is_not_retried(ready: Head) -> None:
    job = ready.submit(retryStrategy={"attempts": 3})
    a = start_all(ready)[0]
    ready.api["terminateJob"]({"jobId": job, "reason": "user said; stop $now"})
    assert ready.status(job) == "RUNNING", "RUNNING until the node reports the exit"
    assignments, kills = ready.poll("n1", [a.attempt_id])
    assert assignments == []
    assert [(k.attempt_id, k.reason) for k in kills] == [(a.attempt_id, "user said; stop $now")]
    ready.exited("n1", a.attempt_id, 143, reason="user said; stop $now")
    ready.ticks(3)
    detail = ready.describe(job)
    assert detail["status"] == "FAILED"
    assert detail["isTerminated"] is True
    assert detail["statusReason"] == "user said; stop $now"
    assert len(detail["attempts"]) == 1
    assert ready.poll("n1") == ([], [])


@pytest.mark.parametrize("op", ["cancelJob", "terminateJob"])
def test_cancel_or_terminate_of_an_array_parent_cascades(ready: Head, op: str) -> None:
    parent = ready.submit(
        "arr",
        arrayProperties={"size": 4},
        containerOverrides={
            "resourceRequirements": [{"type": "VCPU", "value": "4"}],
        },
    )
    running = start_all(ready)
    assert len(running) == 1
    ready.api[op]({"jobId": parent, "reason": "enough"})
    children = [ready.describe(f"{parent}:{i}") for i in range(4)]
    not_started = [c for c in children if c["jobId"] != running[0].job_id]
    assert all(c["status"] == "FAILED" for c in not_started)
    assert all(c["statusReason"] == "enough" for c in not_started)
    flag = "isCancelled" if op == "cancelJob" else "isTerminated"
    assert all(c[flag] for c in not_started)
    assert ready.status(parent) == "PENDING", "one child is still running"
    _, kills = ready.poll("n1", [running[0].attempt_id])
    assert len(kills) == (1 if op == "terminateJob" else 0)
    ready.exited("n1", running[0].attempt_id, 143 if kills else 0)
    detail = ready.describe(parent)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"] == "enough"
    assert detail[flag] is True


def test_cancel_of_an_array_parent_before_expansion(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 2})
    ready.api["cancelJob"]({"jobId": parent, "reason": "early"})
    ready.ticks(3)
    assert ready.status(parent) == "FAILED"
    assert ready.api["describeJobs"]({"jobs": [f"{parent}:0"]})["jobs"] == []


# --- nodes ------------------------------------------------------------------------------------


def test_a_silent_node_is_lost_and_its_attempt_retried_elsewhere(ready: Head) -> None:
    ready.node("n2")
    job = ready.submit(retryStrategy={"attempts": 2})
    a = start_all(ready, "n1")
    assert [x.job_id for x in a] == [job]
    ready.clock.advance(LOST_AFTER - 1)
    ready.poll("n2")
    ready.ticks(1)
    assert ready.status(job) == "RUNNING", "not silent for long enough yet"
    ready.clock.advance(2)
    ready.poll("n2")
    ready.ticks(1)
    detail = ready.describe(job)
    assert detail["status"] == "RUNNABLE"
    assert "n1" in detail["statusReason"]
    assert detail["statusReason"].startswith("Host lost: node n1")
    assert detail["attempts"][0]["statusReason"] == detail["statusReason"]
    b = start_all(ready, "n2")
    assert b[0].attempt_id == f"{job}/2"
    assert b[0].environment["AWS_BATCH_JOB_ATTEMPT"] == "2"
    with pytest.raises(StaleSession):
        ready.poll("n1")
    with pytest.raises(StaleSession):  # a late report from the lost node is refused
        ready.exited("n1", a[0].attempt_id, 0)
    assert ready.status(job) == "RUNNING"
    ready.exited("n2", b[0].attempt_id, 0)
    assert ready.status(job) == "SUCCEEDED"
    nodes = ready.api["listNodes"]({"includeGone": True})["nodes"]
    assert {n["nodeId"]: n["status"] for n in nodes} == {"n1": "LOST", "n2": "ACTIVE"}


def test_a_lost_node_fails_a_job_with_no_attempts_left(ready: Head) -> None:
    job = ready.submit()
    start_all(ready)
    ready.clock.advance(LOST_AFTER + 1)
    ready.ticks(1)
    detail = ready.describe(job)
    assert detail["status"] == "FAILED"
    assert detail["statusReason"].startswith("Host lost: node n1")


def test_a_job_too_big_for_every_node_gets_a_misconfiguration_reason(ready: Head) -> None:
    job = ready.submit(
        containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "64"}]}
    )
    small = ready.submit("small")
    ready.ticks(3)
    detail = ready.describe(job)
    assert detail["status"] == "RUNNABLE"
    assert detail["statusReason"] == f"{NEVER_FITS} - needs 64 vCPUs, largest node has 4"
    assert ready.status(small) == "STARTING"


def test_heterogeneous_unmanaged_nodes_job_fits_the_big_memory_node(head: Head) -> None:
    head.environment()
    head.queue()
    head.definition()
    head.node("many-cpus", vcpus=8, memory_mib=1024)
    head.node("much-memory", vcpus=2, memory_mib=65536)
    job = head.submit(
        containerOverrides={"resourceRequirements": [{"type": "MEMORY", "value": "32768"}]}
    )
    head.ticks(3)
    assert head.status(job) == "STARTING"
    assert NEVER_FITS not in (head.describe(job).get("statusReason") or "")


def test_unknown_node_and_unknown_environment(ready: Head) -> None:
    with pytest.raises(NotFound):
        ready.poll("ghost")
    with pytest.raises(NotFound):
        ready.node("n9", ce="no-such-ce")


def test_update_compute_environment_can_resize(ready: Head) -> None:
    ready.api["updateComputeEnvironment"]({"computeEnvironment": "ce", "mnp": {"nodes": 0}})


def test_disabled_environment_takes_no_new_work(ready: Head) -> None:
    ready.api["updateComputeEnvironment"]({"computeEnvironment": "ce", "state": "DISABLED"})
    job = ready.submit()
    ready.ticks(3)
    assert ready.status(job) == "RUNNABLE"
    ready.api["updateComputeEnvironment"]({"computeEnvironment": "ce", "state": "ENABLED"})
    ready.ticks(1)
    assert ready.status(job) == "STARTING"


def test_list_jobs_defaults_to_running_and_shows_array_parents_as_pending(ready: Head) -> None:
    running = ready.submit("running")
    start_all(ready)
    ready.submit(
        "waiting", containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]}
    )
    arr = ready.submit(
        "arr",
        arrayProperties={"size": 2},
        containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]},
    )
    ready.ticks(2)
    listed = ready.api["listJobs"]({"jobQueue": "q"})["jobSummaryList"]
    assert [j["jobId"] for j in listed] == [running]
    pending = ready.api["listJobs"]({"jobQueue": "q", "jobStatus": "PENDING"})
    assert [j["jobId"] for j in pending["jobSummaryList"]] == [arr]
    children = ready.api["listJobs"]({"arrayJobId": arr, "jobStatus": "RUNNABLE"})
    assert [j["jobId"] for j in children["jobSummaryList"]] == [f"{arr}:0", f"{arr}:1"]


# --- input that is refused writes nothing -----------------------------------------------------


def test_invalid_input_writes_nothing(ready: Head) -> None:
    existing = ready.submit("existing")
    ready.store.settle()  # its rows, as the next pass writes them (a read would, too)
    before = row_counts(ready.db_path)
    s = ready.api
    bad_calls: list[tuple[Any, dict[str, Any], type[Exception]]] = [
        (
            s["submitJob"],
            {"jobName": "bad name", "jobQueue": "q", "jobDefinition": "def"},
            InvalidInput,
        ),
        (
            s["submitJob"],
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "def",
                "arrayProperties": {"size": 1},
            },
            InvalidInput,
        ),
        (
            s["submitJob"],
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "def",
                "containerOverrides": {"environment": [{"name": "AWS_BATCH_JOB_ID"}]},
            },
            InvalidInput,
        ),
        (
            s["submitJob"],
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "def",
                "parameters": {"pad": "x" * 31 * 1024},
            },
            InvalidInput,
        ),
        (
            s["submitJob"],
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "def",
                "timeout": {"attemptDurationSeconds": 10},
            },
            InvalidInput,
        ),
        (
            s["submitJob"],
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "def",
                "dependsOn": [{"jobId": "ghost"}],
            },
            InvalidInput,
        ),
        (
            s["submitJob"],
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "def",
                "arrayProperties": {"size": 2},
                "dependsOn": [{"jobId": existing, "type": "N_TO_N"}],
            },
            InvalidInput,
        ),
        (
            s["registerJobDefinition"],
            {"jobDefinitionName": "d", "type": "container", "containerProperties": {"vcpus": 0}},
            InvalidInput,
        ),
        (
            s["registerJobDefinition"],
            {
                "jobDefinitionName": "d",
                "type": "container",
                "containerProperties": {"command": ["x"]},
                "timeout": {"attemptDurationSeconds": 59},
            },
            InvalidInput,
        ),
        (
            s["createJobQueue"],
            {
                "jobQueueName": "q2",
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ghost"}],
            },
            InvalidInput,
        ),
        (
            s["createJobQueue"],
            {
                "jobQueueName": "q",
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
            },
            Conflict,
        ),
        (
            s["createComputeEnvironment"],
            {"computeEnvironmentName": "x y", "type": "UNMANAGED"},
            InvalidInput,
        ),
        (s["deleteComputeEnvironment"], {"computeEnvironment": "ce"}, InvalidInput),
        (s["deleteJobQueue"], {"jobQueue": "q"}, InvalidInput),
        (s["updateJobQueue"], {"jobQueue": "q", "priority": -1}, InvalidInput),
    ]
    for call, body, error in bad_calls:
        with pytest.raises(error):
            call(body)
        assert row_counts(ready.db_path) == before, body
    assert ready.state.queues["q"].priority == 1


# --- restart ----------------------------------------------------------------------------------


def test_restart_keeps_every_job_and_its_history(ready: Head, home: Path) -> None:
    ok = ready.submit("ok")
    bad = ready.submit("bad", retryStrategy={"attempts": 2})
    arr = ready.submit("arr", arrayProperties={"size": 2})
    after = ready.submit("after", dependsOn=[{"jobId": arr}])
    got = {a.job_id: a for a in start_all(ready, "n1")}
    ready.exited("n1", got[ok].attempt_id, 0)
    ready.exited("n1", got[bad].attempt_id, 1)
    got.update({a.job_id: a for a in start_all(ready, "n1")})
    ready.exited("n1", got[f"{arr}:0"].attempt_id, 0)
    cancelled = ready.submit("cancelled")
    ready.api["cancelJob"]({"jobId": cancelled, "reason": "no"})
    queued = ready.submit(
        "queued", containerOverrides={"resourceRequirements": [{"type": "VCPU", "value": "4"}]}
    )
    ready.ticks(2)
    all_ids = [ok, bad, arr, f"{arr}:0", f"{arr}:1", after, cancelled, queued]
    before = {j: ready.describe(j) for j in all_ids}
    assert before[bad]["status"] == "RUNNING" and len(before[bad]["history"]) >= 6
    assert before[after]["status"] == "PENDING"
    assert before[queued]["status"] == "RUNNABLE"
    ready.close()

    again = Head.open(home, clock=ready.clock, lost_after_seconds=LOST_AFTER)
    try:
        after_restart = {j: again.describe(j) for j in all_ids}
        assert after_restart == before
        definitions = again.api["describeJobDefinitions"]({})["jobDefinitions"]
        assert [d["jobDefinitionName"] for d in definitions] == ["def"]
        assert again.api["describeJobQueues"]({})["jobQueues"][0]["jobQueueName"] == "q"
        assert again.definition("def")["revision"] == 2
        # the head picks up where it left off
        again.seq = dict(ready.seq)
        again.exited("n1", got[bad].attempt_id, 0)
        again.exited("n1", got[f"{arr}:1"].attempt_id, 0)
        assert again.status(bad) == "SUCCEEDED"
        assert again.status(arr) == "SUCCEEDED"
        again.ticks(2)
        assert again.status(after) in ("RUNNABLE", "STARTING")
    finally:
        again.close()


def test_restart_resends_an_assignment_that_was_never_started(ready: Head, home: Path) -> None:
    job = ready.submit()
    ready.ticks(2)
    assignments, _ = ready.poll("n1")
    assert [a.job_id for a in assignments] == [job]
    ready.close()
    again = Head.open(home, clock=ready.clock)
    try:
        resent, _ = again.poll("n1")
        assert [a.attempt_id for a in resent] == [f"{job}/1"]
        again.started("n1", resent[0].attempt_id)
        assert again.status(job) == "RUNNING"
    finally:
        again.close()


def test_an_exit_reported_without_a_start_still_records_when_the_job_started(
    ready: Head,
) -> None:
    """An agent may report ``exited`` for an attempt it never reported ``started`` (the start
    was not seen): the job still started then, so it has a startedAt like its attempt."""
    job = ready.submit()
    ready.ticks(2)
    assignments, _ = ready.poll("n1")
    ready.clock.advance(3)
    ready.exited("n1", assignments[0].attempt_id, 0)
    detail = ready.describe(job)
    assert detail["status"] == "SUCCEEDED"
    assert detail["startedAt"] == detail["attempts"][0]["startedAt"] == ready.clock.now
    ready.ticks(1)
    assert ready.poll("n1") == ([], [])  # nothing re-sent for the ended attempt
