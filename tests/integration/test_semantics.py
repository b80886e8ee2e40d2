"""AWS Batch job semantics against a running head node and real node agents."""

from __future__ import annotations

import pytest

from mnp.errors import InvalidInput
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def test_standard_job_output_env_and_history(shared_cluster: Cluster) -> None:
    c = shared_cluster
    jd = c.register(
        "env-probe",
        [
            "sh",
            "-c",
            'echo "id=$AWS_BATCH_JOB_ID attempt=$AWS_BATCH_JOB_ATTEMPT '
            'q=$AWS_BATCH_JQ_NAME ce=$AWS_BATCH_CE_NAME greet=$GREETING arg=$0"; '
            "echo oops >&2",
            "Ref::word",
        ],
        parameters={"word": "default"},
        container={"environment": [{"name": "GREETING", "value": "hello; $world"}]},
    )
    job = c.submit("env-probe", jd, parameters={"word": "it's"})
    d = c.wait_status(job, "SUCCEEDED", "FAILED")
    assert d["status"] == "SUCCEEDED", d
    out = c.logs(job)
    assert f"id={job} attempt=1 q=default ce=local greet=hello; $world arg=it's" in out
    assert "oops" in out
    assert [h["status"] for h in d["history"]] == [
        "SUBMITTED",
        "RUNNABLE",
        "STARTING",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert d["container"]["exitCode"] == 0
    assert d["container"]["logStreamName"].startswith("env-probe/default/")
    assert d["nodeId"].startswith("local-")  # on a loopback alias or its own namespace's eth0
    assert d["nodeAddress"] in {n["address"] for n in c.client.nodes()}


def test_array_children_summary_and_dependency_on_whole_array(shared_cluster: Cluster) -> None:
    c = shared_cluster
    jd = c.register(
        "arr",
        ["sh", "-c", 'echo "$AWS_BATCH_JOB_ARRAY_INDEX/$AWS_BATCH_JOB_ARRAY_SIZE"; sleep 0.2'],
    )
    parent = c.submit("arr", jd, arrayProperties={"size": 5})
    after = c.submit("after", jd, dependsOn=[{"jobId": parent}])
    seen_parent: set[str] = set()

    def parent_done() -> bool:
        d = c.client.describe(parent)
        seen_parent.add(d["status"])
        return d["status"] in ("SUCCEEDED", "FAILED")

    wait_for("the array to finish", parent_done)
    d = c.client.describe(parent)
    assert d["status"] == "SUCCEEDED"
    assert not seen_parent & {"RUNNABLE", "STARTING", "RUNNING"}
    assert d["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 5
    assert {h["status"] for h in d["history"]} == {"SUBMITTED", "PENDING", "SUCCEEDED"}
    children = c.client.list_jobs(array_job_id=parent)
    assert sorted(ch["jobId"] for ch in children) == [f"{parent}:{i}" for i in range(5)]
    for i in range(5):
        assert c.logs(f"{parent}:{i}").strip() == f"{i}/5"
        child = c.client.describe(f"{parent}:{i}")
        assert child["history"][0]["status"] == "PENDING"
    dep = c.wait_status(after, "SUCCEEDED", "FAILED")
    assert dep["status"] == "SUCCEEDED"
    last_child_stop = max(c.client.describe(f"{parent}:{i}")["stoppedAt"] for i in range(5))
    assert dep["startedAt"] >= last_child_stop


def test_sequential_and_n_to_n(shared_cluster: Cluster) -> None:
    c = shared_cluster
    jd = c.register("seq", ["sh", "-c", "sleep 0.1"])
    seq = c.submit("seq", jd, arrayProperties={"size": 3}, dependsOn=[{"type": "SEQUENTIAL"}])
    pair = c.submit(
        "pair", jd, arrayProperties={"size": 3}, dependsOn=[{"jobId": seq, "type": "N_TO_N"}]
    )
    c.wait_status(pair, "SUCCEEDED", "FAILED")
    s = [c.client.describe(f"{seq}:{i}") for i in range(3)]
    p = [c.client.describe(f"{pair}:{i}") for i in range(3)]
    assert all(x["status"] == "SUCCEEDED" for x in s + p)
    assert s[0]["stoppedAt"] <= s[1]["startedAt"] and s[1]["stoppedAt"] <= s[2]["startedAt"]
    for i in range(3):
        assert p[i]["startedAt"] >= s[i]["stoppedAt"]


def test_failed_dependency_fails_dependent(shared_cluster: Cluster) -> None:
    c = shared_cluster
    bad = c.register("bad", ["sh", "-c", "exit 7"])
    ok = c.register("ok", ["true"])
    first = c.submit("bad", bad)
    second = c.submit("second", ok, dependsOn=[{"jobId": first}])
    d = c.wait_status(second, "FAILED", "SUCCEEDED")
    assert d["status"] == "FAILED"
    assert first in d["statusReason"]
    assert c.client.describe(first)["container"]["exitCode"] == 7
    assert "RUNNING" not in [h["status"] for h in d["history"]]


def test_retry_with_evaluate_on_exit(shared_cluster: Cluster) -> None:
    c = shared_cluster
    jd = c.register(
        "flaky",
        [
            "sh",
            "-c",
            'echo "attempt $AWS_BATCH_JOB_ATTEMPT"; '
            '[ "$AWS_BATCH_JOB_ATTEMPT" -ge 3 ] && exit 0; exit 3',
        ],
        retryStrategy={
            "attempts": 4,
            "evaluateOnExit": [
                {"onExitCode": "4", "action": "EXIT"},
                {"onExitCode": "3*", "action": "RETRY"},
            ],
        },
    )
    job = c.submit("flaky", jd)
    d = c.wait_status(job, "SUCCEEDED", "FAILED")
    assert d["status"] == "SUCCEEDED"
    assert [a["container"]["exitCode"] for a in d["attempts"]] == [3, 3, 0]
    for n in (1, 2, 3):
        assert c.logs(job, attempt=n).strip() == f"attempt {n}"
    # an EXIT rule stops retrying at once
    stop = c.register(
        "stop",
        ["sh", "-c", "exit 4"],
        retryStrategy={"attempts": 5, "evaluateOnExit": [{"onExitCode": "4", "action": "EXIT"}]},
    )
    d2 = c.wait_status(c.submit("stop", stop), "SUCCEEDED", "FAILED")
    assert d2["status"] == "FAILED" and len(d2["attempts"]) == 1


def test_timeout_is_enforced_and_never_retried(shared_cluster: Cluster) -> None:
    c = shared_cluster
    jd = c.register(
        "slow",
        ["sleep", "30"],
        retryStrategy={"attempts": 3},
        timeout={"attemptDurationSeconds": 1},
    )
    job = c.submit("slow", jd)
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=15)
    assert d["status"] == "FAILED"
    assert "timeout" in d["statusReason"].lower()
    assert len(d["attempts"]) == 1
    a = d["attempts"][0]
    assert a["container"]["exitCode"] == 143  # SIGTERM honoured by sleep
    assert 900 <= a["stoppedAt"] - a["startedAt"] < 5000


def test_cancel_and_terminate(shared_cluster: Cluster) -> None:
    c = shared_cluster
    long = c.register("long", ["sleep", "30"], retryStrategy={"attempts": 3})
    running = c.submit("running", long)
    pending = c.submit("waits", long, dependsOn=[{"jobId": running}])
    c.wait_status(running, "RUNNING")
    c.wait_status(pending, "PENDING")
    c.client.cancel(pending, "not needed")
    d = c.wait_status(pending, "FAILED")
    assert d["isCancelled"] and d["statusReason"] == "not needed"
    c.client.cancel(running, "too late")  # a no-op once RUNNING
    assert c.client.describe(running)["status"] == "RUNNING"
    c.client.terminate(running, "stop it")
    d = c.wait_status(running, "FAILED", timeout=10)
    assert d["isTerminated"] and d["statusReason"] == "stop it"
    assert len(d["attempts"]) == 1  # never retried


def test_cancel_array_parent_cascades(shared_cluster: Cluster) -> None:
    c = shared_cluster
    gate = c.register("gate", ["sleep", "30"])
    blocker = c.submit("blocker", gate)
    arr = c.submit(
        "blocked-array", gate, arrayProperties={"size": 3}, dependsOn=[{"jobId": blocker}]
    )
    wait_for("children", lambda: len(c.client.list_jobs(array_job_id=arr)) == 3)
    c.client.cancel(arr, "cancel all")
    d = c.wait_status(arr, "FAILED")
    assert d["arrayProperties"]["statusSummary"]["FAILED"] == 3
    for i in range(3):
        assert c.client.describe(f"{arr}:{i}")["isCancelled"]
    c.client.terminate(blocker, "cleanup")
    c.wait_status(blocker, "FAILED")


def test_job_that_can_never_fit_says_why(shared_cluster: Cluster) -> None:
    c = shared_cluster
    jd = c.register(
        "huge", ["true"], container={"resourceRequirements": [{"type": "VCPU", "value": "64"}]}
    )
    job = c.submit("huge", jd)

    def reason() -> str | None:
        d = c.client.describe(job)
        return d.get("statusReason") if d["status"] == "RUNNABLE" else None

    text = wait_for("a statusReason", reason)
    assert text.startswith("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT")
    assert "64 vCPUs" in text and "largest node has 2" in text
    c.client.cancel(job, "cannot run")
    c.wait_status(job, "FAILED")


def test_bad_input_names_every_field_and_writes_nothing(shared_cluster: Cluster) -> None:
    c = shared_cluster
    before = c.client.list_jobs()
    with pytest.raises(InvalidInput) as e:
        c.client.submit(
            {
                "jobName": "bad name;$x",
                "jobQueue": "default",
                "jobDefinition": "ok",
                "arrayProperties": {"size": 10001},
                "retryStrategy": {"attempts": 0},
            }
        )
    paths = {fe.path for fe in e.value.errors}
    # the array maximum is the head's (max_array_size), checked with its state after these
    assert {"jobName", "retryStrategy.attempts"} <= paths
    with pytest.raises(InvalidInput) as e2:
        c.client.submit(
            {
                "jobName": "x",
                "jobQueue": "nope",
                "jobDefinition": "missing",
                "containerOverrides": {"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "1"}]},
            }
        )
    paths2 = {fe.path for fe in e2.value.errors}
    assert {"containerOverrides.environment[0].name"} <= paths2 or {
        "jobQueue",
        "jobDefinition",
    } <= paths2
    assert len(c.client.list_jobs()) == len(before)
