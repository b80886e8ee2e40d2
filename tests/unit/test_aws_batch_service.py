"""Service behaviour the AWS Batch operations added: scheduling policies, tags, the job queue
snapshot, share identifiers, ListJobs selectors and filters, quotas, and paging tokens.

Both front doors call these methods; the wire tests (``test_aws_batch_wire``) check only
what the wire adds on top."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import Conflict, InvalidInput, NotFound
from mnp.spec.arns import ARN_PREFIX
from tests.unit.helpers_core import HOSTILE, T0, Head


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    yield h
    h.close()


@pytest.fixture
def ready(head: Head) -> Head:
    """Environment ``ce`` (UNMANAGED), FIFO queue ``q``, definition ``def``, node ``n1``."""
    head.basic(("n1",))
    return head


def problems(call: Any, body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        call(body)
    return {e.path: e.message for e in err.value.errors}


def policy(h: Head, name: str = "fs", **fairshare: Any) -> str:
    body: dict[str, Any] = {"name": name}
    if fairshare:
        body["fairsharePolicy"] = fairshare
    return str(h.api["createSchedulingPolicy"](body)["arn"])


def fair_queue(h: Head, name: str = "fq", policy_arn: str | None = None) -> None:
    h.api["createJobQueue"](
        {
            "jobQueueName": name,
            "priority": 5,
            "schedulingPolicyArn": policy_arn or policy(h),
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
        }
    )


# --- scheduling policies ---------------------------------------------------------------------
def test_policy_is_stored_with_defaults_and_survives_a_restart(head: Head, tmp_path: Path) -> None:
    arn = policy(
        head,
        shareDecaySeconds=3600,
        computeReservation=50,
        shareDistribution=[
            {"shareIdentifier": "teamA*", "weightFactor": 0.5},
            {"shareIdentifier": "b"},
        ],
    )
    assert arn == f"{ARN_PREFIX}:scheduling-policy/fs"
    plain = policy(head, "plain")
    head.api["tagResource"]({"resourceArn": plain, "tags": {"k": HOSTILE}})
    head.close()
    again = Head.open(tmp_path / "home")
    try:
        got = again.api["describeSchedulingPolicies"]({"arns": [arn, plain, "nope"]})
        assert got == {
            "schedulingPolicies": [
                {
                    "name": "fs",
                    "arn": arn,
                    "fairsharePolicy": {
                        "shareDecaySeconds": 3600,
                        "computeReservation": 50,
                        "shareDistribution": [
                            {"shareIdentifier": "teamA*", "weightFactor": 0.5},
                            {"shareIdentifier": "b", "weightFactor": 1.0},
                        ],
                    },
                    "tags": {},
                },
                {
                    "name": "plain",
                    "arn": plain,
                    "fairsharePolicy": {
                        "shareDecaySeconds": 0,
                        "computeReservation": 0,
                        "shareDistribution": [],
                    },
                    "tags": {"k": HOSTILE},
                },
            ]
        }
        assert again.api["listSchedulingPolicies"]({}) == {
            "schedulingPolicies": [{"arn": arn}, {"arn": plain}]
        }
    finally:
        again.close()


def test_policy_ranges_and_overlaps_are_reported_together(head: Head) -> None:
    body = {
        "name": "bad name",
        "fairsharePolicy": {
            "shareDecaySeconds": 604801,
            "computeReservation": 100,
            "shareDistribution": [
                {"shareIdentifier": "UserA*", "weightFactor": 0.00001},
                {"shareIdentifier": "UserA1", "weightFactor": 1000},
                {"shareIdentifier": "not-alnum"},
            ],
        },
    }
    got = problems(head.api["createSchedulingPolicy"], body)
    assert set(got) == {
        "name",
        "fairsharePolicy.shareDecaySeconds",
        "fairsharePolicy.computeReservation",
        "fairsharePolicy.shareDistribution[0].weightFactor",
        "fairsharePolicy.shareDistribution[1].weightFactor",
        "fairsharePolicy.shareDistribution[2].shareIdentifier",
    }
    overlap = {
        "name": "p",
        "fairsharePolicy": {
            "shareDistribution": [{"shareIdentifier": "UserA*"}, {"shareIdentifier": "UserA1"}]
        },
    }
    assert problems(head.api["createSchedulingPolicy"], overlap) == {
        "fairsharePolicy.shareDistribution[1].shareIdentifier": "'UserA1' overlaps 'UserA*' "
        "(shareDistribution[0])"
    }
    assert "quotaSharePolicy" in problems(
        head.api["createSchedulingPolicy"], {"name": "q", "quotaSharePolicy": {}}
    )
    policy(head, "p")
    with pytest.raises(Conflict):
        policy(head, "p")


def test_update_replaces_the_fairshare_policy(head: Head) -> None:
    arn = policy(head, computeReservation=10, shareDistribution=[{"shareIdentifier": "a"}])
    head.api["updateSchedulingPolicy"]({"arn": arn})  # nothing given: nothing changes
    assert (
        head.api["describeSchedulingPolicies"]({"arns": [arn]})["schedulingPolicies"][0][
            "fairsharePolicy"
        ]["computeReservation"]
        == 10
    )
    head.api["updateSchedulingPolicy"]({"arn": arn, "fairsharePolicy": {"shareDecaySeconds": 60}})
    assert head.api["describeSchedulingPolicies"]({"arns": ["fs"]})["schedulingPolicies"][0][
        "fairsharePolicy"
    ] == {"shareDecaySeconds": 60, "computeReservation": 0, "shareDistribution": []}
    with pytest.raises(NotFound):
        head.api["updateSchedulingPolicy"]({"arn": f"{ARN_PREFIX}:scheduling-policy/nope"})


def test_policy_in_use_cannot_be_deleted(ready: Head) -> None:
    arn = policy(ready)
    fair_queue(ready, policy_arn=arn)
    assert problems(ready.api["deleteSchedulingPolicy"], {"arn": arn}) == {
        "arn": "scheduling policy 'fs' is used by job queues: fq"
    }
    ready.api["updateJobQueue"]({"jobQueue": "fq", "state": "DISABLED"})
    ready.api["deleteJobQueue"]({"jobQueue": "fq"})
    ready.api["deleteSchedulingPolicy"]({"arn": arn})
    assert ready.api["listSchedulingPolicies"]({}) == {"schedulingPolicies": []}
    assert problems(ready.api["deleteSchedulingPolicy"], {}) == {"arn": "required"}


def test_fifo_queue_cannot_get_a_policy_and_a_policy_cannot_be_removed(ready: Head) -> None:
    first, second = policy(ready, "one"), policy(ready, "two")
    assert problems(
        ready.api["updateJobQueue"], {"jobQueue": "q", "schedulingPolicyArn": first}
    ) == {
        "schedulingPolicyArn": "job queue 'q' is a FIFO queue: a scheduling policy can only be "
        "given when the queue is created"
    }
    fair_queue(ready, policy_arn=first)
    ready.api["updateJobQueue"]({"jobQueue": "fq", "schedulingPolicyArn": second})
    detail = ready.api["describeJobQueues"]({"jobQueues": ["fq"]})["jobQueues"][0]
    assert detail["schedulingPolicyArn"] == second
    assert problems(ready.api["updateJobQueue"], {"jobQueue": "fq", "schedulingPolicyArn": ""}) == {
        "schedulingPolicyArn": "a job queue's scheduling policy can be replaced but not removed"
    }
    assert "schedulingPolicyArn" in problems(
        ready.api["updateJobQueue"], {"jobQueue": "fq", "schedulingPolicyArn": "nope"}
    )
    assert (
        "schedulingPolicyArn"
        not in ready.api["describeJobQueues"]({"jobQueues": ["q"]})["jobQueues"][0]
    )


# --- share identifiers -------------------------------------------------------------------------
def test_share_identifier_is_required_on_fair_share_queues_and_refused_on_fifo(ready: Head) -> None:
    fair_queue(ready)
    assert problems(
        ready.api["submitJob"], {"jobName": "j", "jobQueue": "fq", "jobDefinition": "def"}
    ) == {"shareIdentifier": "required: job queue 'fq' has a fair-share scheduling policy"}
    assert problems(
        ready.api["submitJob"],
        {"jobName": "j", "jobQueue": "q", "jobDefinition": "def", "shareIdentifier": "a"},
    ) == {
        "shareIdentifier": "job queue 'q' has no fair-share scheduling policy; "
        "leave shareIdentifier out"
    }
    job = ready.submit(jobQueue="fq", shareIdentifier="teamA", schedulingPriorityOverride=7)
    detail = ready.describe(job)
    assert (detail["shareIdentifier"], detail["schedulingPriority"]) == ("teamA", 7)
    ready.ticks(1)
    listed = ready.api["listJobs"](
        {"jobQueue": "fq", "filters": [{"name": "SHARE_IDENTIFIER", "values": ["teamA"]}]}
    )["jobSummaryList"]
    assert [(s["jobId"], s["shareIdentifier"]) for s in listed] == [(job, "teamA")]
    none = ready.api["listJobs"](
        {"jobQueue": "fq", "filters": [{"name": "SHARE_IDENTIFIER", "values": ["teamB"]}]}
    )
    assert none["jobSummaryList"] == []
    with_status = ready.api["listJobs"](
        {
            "jobQueue": "fq",
            "jobStatus": "SUCCEEDED",
            "filters": [{"name": "SHARE_IDENTIFIER", "values": ["teamA"]}],
        }
    )
    assert with_status["jobSummaryList"] == []  # combined with jobStatus, unlike other filters


def test_a_fair_share_queue_has_at_most_500_active_shares(ready: Head) -> None:
    fair_queue(ready)
    for i in range(500):
        ready.submit(jobQueue="fq", shareIdentifier=f"s{i}")
    ready.submit(jobQueue="fq", shareIdentifier="s7")  # an active share: fine
    assert problems(
        ready.api["submitJob"],
        {"jobName": "j", "jobQueue": "fq", "jobDefinition": "def", "shareIdentifier": "new"},
    ) == {"shareIdentifier": "job queue 'fq' already has 500 active share identifiers"}


def test_definition_priority_and_propagate_tags_reach_the_job(ready: Head) -> None:
    ready.definition("prio", schedulingPriority=3, propagateTags=True, tags={"from": "def"})
    job = ready.submit(jobDefinition="prio", tags={"own": "1"})
    detail = ready.describe(job)
    assert detail["schedulingPriority"] == 3
    assert detail["propagateTags"] is True
    assert detail["tags"] == {"from": "def", "own": "1"}


# --- job queue snapshot --------------------------------------------------------------------------
def test_snapshot_lists_runnable_jobs_in_dispatch_order(head: Head) -> None:
    ready = head  # as the ready fixture makes it, but a node with room for one 1-vCPU job
    ready.environment()
    ready.queue()
    ready.definition()
    ready.node("n1", vcpus=1)  # (a node's capacity can no longer change by re-registering)
    jobs = []
    for i in range(4):
        jobs.append(ready.submit(f"j{i}"))
        ready.clock.advance(1)
        ready.ticks(1)
    ready.run_next("n1")  # j0 takes the node
    snap = ready.api["getJobQueueSnapshot"]({"jobQueue": f"{ARN_PREFIX}:job-queue/q"})
    front = snap["frontOfQueue"]
    assert [j["jobArn"].rsplit("/", 1)[1] for j in front["jobs"]] == jobs[1:]
    times = [j["earliestTimeAtPosition"] for j in front["jobs"]]
    assert times == sorted(times) and times[0] >= T0
    assert front["lastUpdatedAt"] == ready.clock()
    assert snap["queueUtilization"]["totalCapacityUsage"] == [
        {"capacityUnit": "VCPU", "quantity": 1.0}
    ]
    assert "fairshareUtilization" not in snap["queueUtilization"]
    with pytest.raises(NotFound):
        ready.api["getJobQueueSnapshot"]({"jobQueue": "nope"})
    assert problems(ready.api["getJobQueueSnapshot"], {}) == {"jobQueue": "required"}


def test_snapshot_shows_at_most_100_jobs_and_share_usage(ready: Head) -> None:
    fair_queue(ready)
    for i in range(103):
        ready.submit(f"j{i}", jobQueue="fq", shareIdentifier="a" if i % 2 else "b")
    ready.ticks(1)
    snap = ready.api["getJobQueueSnapshot"]({"jobQueue": "fq"})
    assert len(snap["frontOfQueue"]["jobs"]) == 100
    ready.ticks(2)
    snap = ready.api["getJobQueueSnapshot"]({"jobQueue": "fq"})
    fair = snap["queueUtilization"]["fairshareUtilization"]
    assert fair["activeShareCount"] == 2
    used = {
        u["shareIdentifier"]: u["capacityUsage"][0]["quantity"]
        for u in fair["topCapacityUtilization"]
    }
    assert sum(used.values()) == snap["queueUtilization"]["totalCapacityUsage"][0]["quantity"] > 0


# --- tags -----------------------------------------------------------------------------------------
def test_every_taggable_resource_takes_lists_and_drops_tags(ready: Head) -> None:
    job = ready.submit(tags={"t": "0"})
    arr = ready.submit("arr", arrayProperties={"size": 2})
    arns = [
        f"{ARN_PREFIX}:compute-environment/ce",
        f"{ARN_PREFIX}:job-queue/q",
        f"{ARN_PREFIX}:job-definition/def:1",
        f"{ARN_PREFIX}:job/{job}",
        policy(ready),
    ]
    for arn in arns:
        ready.api["tagResource"]({"resourceArn": arn, "tags": {"a": "1", "b": HOSTILE}})
        ready.api["untagResource"]({"resourceArn": arn, "tagKeys": ["a", "never-set"]})
        assert ready.api["listTagsForResource"]({"resourceArn": arn})["tags"].get("b") == HOSTILE
    assert ready.api["listTagsForResource"]({"resourceArn": arns[3]})["tags"] == {
        "t": "0",
        "b": HOSTILE,
    }
    assert ready.describe(job)["tags"] == {"t": "0", "b": HOSTILE}
    detail = ready.api["describeComputeEnvironments"]({})["computeEnvironments"][0]
    assert detail["tags"] == {"b": HOSTILE}
    for child in (f"{arr}:0", f"{job}#0"):
        assert "resourceArn" in problems(
            ready.api["listTagsForResource"], {"resourceArn": f"{ARN_PREFIX}:job/{child}"}
        )
    for missing in ("job-queue/nope", "job/nope", "scheduling-policy/nope", "job-definition/d:1"):
        with pytest.raises(NotFound):
            ready.api["listTagsForResource"]({"resourceArn": f"{ARN_PREFIX}:{missing}"})
    for bad in ("q", "arn:aws:batch:r:1:node/x", "arn:aws:batch:r:1:job-queue"):
        assert "resourceArn" in problems(ready.api["listTagsForResource"], {"resourceArn": bad})


def test_tags_survive_a_restart_and_a_finished_job_keeps_its_tags(
    ready: Head, tmp_path: Path
) -> None:
    job = ready.submit()
    ready.run_next("n1")
    ready.exited("n1", f"{job}/1", 0)
    ready.ticks(1)
    assert job not in ready.state.active
    arn = f"{ARN_PREFIX}:job/{job}"
    ready.api["tagResource"]({"resourceArn": arn, "tags": {"done": "yes"}})
    ready.api["tagResource"]({"resourceArn": f"{ARN_PREFIX}:job-queue/q", "tags": {"q": "1"}})
    ready.close()
    again = Head.open(tmp_path / "home")
    try:
        assert again.api["listTagsForResource"]({"resourceArn": arn})["tags"] == {"done": "yes"}
        assert again.api["listTagsForResource"]({"resourceArn": "arn:aws:batch:x:1:job-queue/q"})[
            "tags"
        ] == {"q": "1"}
    finally:
        again.close()


def test_tag_limits(ready: Head) -> None:
    arn = f"{ARN_PREFIX}:job-queue/q"
    ready.api["tagResource"]({"resourceArn": arn, "tags": {f"k{i}": "v" for i in range(45)}})
    got = problems(
        ready.api["tagResource"], {"resourceArn": arn, "tags": {f"n{i}": "v" for i in range(6)}}
    )
    assert got == {"tags": "a resource has at most 50 tags; this makes 51"}
    got = problems(
        ready.api["tagResource"],
        {"resourceArn": arn, "tags": {"x" * 129: "v", "aws:k": "v", "long": "v" * 257}},
    )
    assert set(got) == {f"tags.{'x' * 129}", "tags.aws:k", "tags.long"}
    assert problems(ready.api["tagResource"], {"resourceArn": arn, "tags": {}}) == {
        "tags": "Dictionary should have at least 1 item after validation, not 0"
    }
    assert set(problems(ready.api["untagResource"], {"resourceArn": arn, "tagKeys": []})) == {
        "tagKeys"
    }
    many = {f"k{i}": "v" for i in range(51)}
    body = {"jobQueueName": "q2", "priority": 1, "tags": many, "computeEnvironmentOrder": []}
    assert "tags" in problems(ready.api["createJobQueue"], body)


# --- ListJobs, quotas, paging ---------------------------------------------------------------------
def test_list_jobs_wants_exactly_one_selector_and_one_filter(ready: Head) -> None:
    parent = ready.submit("arr", arrayProperties={"size": 2})
    for body in ({}, {"jobQueue": "q", "arrayJobId": parent}):
        assert "jobQueue" in problems(ready.api["listJobs"], body)
    two = [{"name": "JOB_NAME", "values": ["a"]}, {"name": "JOB_NAME", "values": ["b"]}]
    assert problems(ready.api["listJobs"], {"jobQueue": "q", "filters": two}) == {
        "filters": "only one filter can be used at a time"
    }
    assert "filters[0].name" in problems(
        ready.api["listJobs"], {"jobQueue": "q", "filters": [{"name": "NOPE", "values": ["x"]}]}
    )
    # the native API's allStatuses keeps its own rules
    assert ready.api["listJobs"]({"allStatuses": True})["jobSummaryList"]


def test_paging_tokens_and_sizes_are_checked(ready: Head) -> None:
    for i in range(3):
        ready.submit(f"j{i}")
    first = ready.api["listJobs"]({"jobQueue": "q", "jobStatus": "SUBMITTED", "maxResults": 2})
    assert len(first["jobSummaryList"]) == 2
    rest = ready.api["listJobs"](
        {"jobQueue": "q", "jobStatus": "SUBMITTED", "nextToken": first["nextToken"]}
    )
    assert len(rest["jobSummaryList"]) == 1 and "nextToken" not in rest
    assert problems(ready.api["listJobs"], {"jobQueue": "q", "nextToken": "garbage"}) == {
        "nextToken": "not a token this head node gave out"
    }
    assert problems(ready.api["describeJobQueues"], {"maxResults": 0}) == {
        "maxResults": "must be at least 1"
    }
    big = ready.api["describeJobQueues"]({"maxResults": 5000})  # more than 100: a full page
    assert len(big["jobQueues"]) == 1


def test_at_most_50_queues_and_50_environments(head: Head) -> None:
    for i in range(50):
        head.environment(f"ce{i}")
    with pytest.raises(InvalidInput, match="at most 50 compute environments"):
        head.environment("one-more")
    for i in range(50):
        head.queue(f"q{i}", ces=("ce0",))
    with pytest.raises(InvalidInput, match="at most 50 job queues"):
        head.queue("one-more", ces=("ce0",))


def test_aws_shaped_environment_gets_local_nodes_from_max_vcpus(head: Head) -> None:
    body = {
        "computeEnvironmentName": "aws",
        "type": "MANAGED",
        "computeResources": {"type": "EC2", "maxvCpus": 10, "subnets": []},
    }
    head.api["createComputeEnvironment"](body)
    ce = head.state.ces["aws"]
    assert (ce.node_count, ce.node_resources.vcpus) == (3, 4)  # 4-vCPU nodes: ceil(10/4)
    head.api["createComputeEnvironment"]({**body, "computeEnvironmentName": "aws2"})
    first = {head.state.ces[n].first_address for n in ("aws", "aws2")}
    assert len(first) == 2  # their nodes never share loopback addresses
    head.api["updateComputeEnvironment"](
        {"computeEnvironment": "aws", "computeResources": {"maxvCpus": 4}, "serviceRole": "r"}
    )
    assert head.state.ces["aws"].node_count == 1
    detail = head.api["describeComputeEnvironments"]({"computeEnvironments": ["aws"]})
    got = detail["computeEnvironments"][0]
    assert (got["computeResources"]["maxvCpus"], got["serviceRole"]) == (4, "r")
    head.api["createComputeEnvironment"](
        {"computeEnvironmentName": "mine", "type": "UNMANAGED", "unmanagedvCpus": 8}
    )
    assert head.state.ces["mine"].node_count == 0
