"""boto3's real ``batch`` client against a real head node and its local nodes.

Every operation, the paginators, the error code and message of each validation rule, and job
state seen through the wire against the native API for standard, array and multi-node jobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mnp.api.aws.batch_shapes import MNP_JOB_FIELDS, job_detail
from tests.integration.awsclients import batch_client
from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

TERMINAL = ("SUCCEEDED", "FAILED")
NATIVE_ARNS = "arn:aws:batch:local:"
WIRE_ARNS = "arn:aws:batch:us-east-1:"
"""The region of the head's own ARNs, and the one boto3's client signs for here."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three 2-vCPU local nodes; AWS's 60 s timeout floor (the other tests lower it)."""
    with Cluster(tmp_path_factory.mktemp("aws") / "home", nodes=3, min_timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def b(cluster: Cluster) -> Any:
    return batch_client(cluster)


def definition(b: Any, name: str, command: list[str], **extra: Any) -> str:
    props = {  # no image: the job runs as a plain process (an image means a container)
        "command": command,
        "resourceRequirements": [
            {"type": "VCPU", "value": "1"},
            {"type": "MEMORY", "value": "128"},
        ],
        **extra.pop("containerProperties", {}),
    }
    answer = b.register_job_definition(
        jobDefinitionName=name, type="container", containerProperties=props, **extra
    )
    return str(answer["jobDefinitionArn"])


def submit(b: Any, name: str, job_definition: str, **extra: Any) -> str:
    answer = b.submit_job(jobName=name, jobQueue="default", jobDefinition=job_definition, **extra)
    return str(answer["jobId"])


def wait_status(b: Any, job_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        jobs = b.describe_jobs(jobs=[job_id])["jobs"]
        return jobs[0] if jobs and jobs[0]["status"] in statuses else None

    return wait_for(f"{job_id} to reach {statuses}", check, timeout)


def client_error(call: Any, **params: Any) -> str:
    """The message of the ClientException ``call`` raises (400, as AWS)."""
    with pytest.raises(ClientError) as err:
        call(**params)
    e = err.value.response
    assert e["Error"]["Code"] == "ClientException", e
    assert e["ResponseMetadata"]["HTTPStatusCode"] == 400, e
    return str(e["Error"]["Message"])


def same_as_native(c: Cluster, b: Any, job_ids: list[str]) -> list[dict[str, Any]]:
    """Each job as the wire shows it equals the native answer, less mnp's own fields."""
    wire = b.describe_jobs(jobs=job_ids)["jobs"]
    native = c.client.describe_jobs(job_ids)
    assert [w["jobId"] for w in wire] == [n["jobId"] for n in native] == job_ids
    for w, n in zip(wire, native, strict=True):
        # submittedBy is on the wire too, an extra member botocore parses past (ignores); the
        # wire fills in what AWS always answers (empty lists and maps, eksAttempts) and says
        # the region the client signed for where the native API says the head's own
        expected = json.loads(json.dumps(job_detail(n)).replace(NATIVE_ARNS, WIRE_ARNS))
        expected.pop("submittedBy", None)
        assert not MNP_JOB_FIELDS & set(w), w
        assert expected == w
    return list(wire)


# --- jobs ----------------------------------------------------------------------------------------
def test_standard_job_runs_to_succeeded(cluster: Cluster, b: Any) -> None:
    arn = definition(b, "hello", ["sh", "-c", "echo hello from Ref::who"], parameters={"who": "x"})
    job_id = submit(b, "hello", arn, parameters={"who": "boto3"})
    done = wait_status(b, job_id, *TERMINAL)
    assert done["status"] == "SUCCEEDED", done
    assert done["container"]["exitCode"] == 0
    assert done["container"]["command"] == ["sh", "-c", "echo hello from boto3"]
    assert done["container"]["logStreamName"].startswith("hello/default/")
    [attempt] = done["attempts"]
    assert attempt["container"]["exitCode"] == 0
    assert attempt["container"]["logStreamName"] == done["container"]["logStreamName"]
    for key in ("createdAt", "startedAt", "stoppedAt"):
        assert isinstance(done[key], int) and done[key] > 1_600_000_000_000
    assert done["createdAt"] <= done["startedAt"] <= done["stoppedAt"]
    assert (done["isCancelled"], done["isTerminated"]) == (False, False)
    assert "hello from boto3" in cluster.logs(job_id)
    same_as_native(cluster, b, [job_id])
    assert done["jobDefinition"] == arn and done["jobQueue"].endswith(":job-queue/default")
    # ListJobs: RUNNING only by default; a status or a filter finds it
    assert job_id not in [j["jobId"] for j in b.list_jobs(jobQueue="default")["jobSummaryList"]]
    succeeded = b.list_jobs(jobQueue="default", jobStatus="SUCCEEDED")["jobSummaryList"]
    summary = next(j for j in succeeded if j["jobId"] == job_id)
    assert summary["container"] == {"exitCode": 0}
    by_name = b.list_jobs(jobQueue="default", filters=[{"name": "JOB_NAME", "values": ["HEL*"]}])
    assert job_id in [j["jobId"] for j in by_name["jobSummaryList"]]
    by_def = b.list_jobs(jobQueue="default", filters=[{"name": "JOB_DEFINITION", "values": [arn]}])
    assert job_id in [j["jobId"] for j in by_def["jobSummaryList"]]
    after = b.list_jobs(
        jobQueue="default",
        filters=[{"name": "AFTER_CREATED_AT", "values": [str(done["createdAt"] - 1)]}],
    )
    assert job_id in [j["jobId"] for j in after["jobSummaryList"]]
    before = b.list_jobs(
        jobQueue="default",
        filters=[{"name": "BEFORE_CREATED_AT", "values": [str(done["createdAt"])]}],
    )
    assert job_id not in [j["jobId"] for j in before["jobSummaryList"]]


def test_failed_attempts_are_retried_and_listed(cluster: Cluster, b: Any) -> None:
    arn = definition(b, "fails", ["sh", "-c", "exit 3"])
    job_id = submit(b, "fails", arn, retryStrategy={"attempts": 2})
    done = wait_status(b, job_id, *TERMINAL)
    assert done["status"] == "FAILED"
    assert [a["container"]["exitCode"] for a in done["attempts"]] == [3, 3]
    assert done["container"]["exitCode"] == 3
    assert done["statusReason"]
    same_as_native(cluster, b, [job_id])


def test_array_job_through_the_wire_matches_native(cluster: Cluster, b: Any) -> None:
    arn = definition(b, "arr", ["sh", "-c", "echo child $AWS_BATCH_JOB_ARRAY_INDEX"])
    parent = submit(b, "arr", arn, arrayProperties={"size": 3})
    done = wait_status(b, parent, *TERMINAL)
    assert done["status"] == "SUCCEEDED"
    assert done["arrayProperties"]["size"] == 3
    assert done["arrayProperties"]["statusSummary"]["SUCCEEDED"] == 3
    assert isinstance(done["arrayProperties"]["statusSummaryLastUpdatedAt"], int)
    children = [f"{parent}:{i}" for i in range(3)]
    wire = same_as_native(cluster, b, [parent, *children])
    assert [w["arrayProperties"]["index"] for w in wire[1:]] == [0, 1, 2]
    listed = b.list_jobs(arrayJobId=parent, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == children
    assert all(j["arrayProperties"]["index"] in (0, 1, 2) for j in listed)


def test_multinode_job_through_the_wire_matches_native(cluster: Cluster, b: Any) -> None:
    command = ["sh", "-c", "echo node $AWS_BATCH_JOB_NODE_INDEX of $AWS_BATCH_JOB_NUM_NODES"]
    container = {"command": command, "resourceRequirements": [{"type": "VCPU", "value": "1"}]}
    arn = b.register_job_definition(
        jobDefinitionName="mnp",
        type="multinode",
        nodeProperties={
            "numNodes": 2,
            "mainNode": 0,
            "nodeRangeProperties": [{"targetNodes": "0:", "container": container}],
        },
    )["jobDefinitionArn"]
    job_id = submit(b, "mnp", arn)
    done = wait_status(b, job_id, *TERMINAL, timeout=90)
    assert done["status"] == "SUCCEEDED", done
    assert done["nodeProperties"]["numNodes"] == 2
    nodes = [f"{job_id}#0", f"{job_id}#1"]
    wait_for("both nodes to finish", lambda: all(
        j["status"] in TERMINAL for j in b.describe_jobs(jobs=nodes)["jobs"]
    ))  # fmt: skip
    wire = same_as_native(cluster, b, [job_id, *nodes])
    assert [w["nodeDetails"] for w in wire[1:]] == [
        {"nodeIndex": 0, "isMainNode": True},
        {"nodeIndex": 1, "isMainNode": False},
    ]
    listed = b.list_jobs(multiNodeJobId=job_id, jobStatus="SUCCEEDED")["jobSummaryList"]
    assert sorted(j["jobId"] for j in listed) == nodes
    assert {j["nodeProperties"]["numNodes"] for j in listed} == {2}


def test_cancel_and_terminate(cluster: Cluster, b: Any) -> None:
    arn = definition(b, "sleepy", ["sleep", "60"])
    running = submit(b, "sleepy", arn)
    wait_status(b, running, "RUNNING")
    b.cancel_job(jobId=running, reason="cancel does nothing once it runs")
    waiting = submit(b, "waits", arn, dependsOn=[{"jobId": running}])
    cancelled = submit(b, "cancelled", arn, dependsOn=[{"jobId": running}])
    wait_status(b, waiting, "PENDING")
    b.cancel_job(jobId=cancelled, reason="never mind")
    done = wait_status(b, cancelled, "FAILED")
    assert (done["isCancelled"], done["statusReason"]) == (True, "never mind")
    assert b.describe_jobs(jobs=[running])["jobs"][0]["status"] == "RUNNING"
    b.terminate_job(jobId=running, reason="stop it")
    done = wait_status(b, running, "FAILED")
    assert (done["isTerminated"], done["statusReason"]) == (True, "stop it")
    assert wait_status(b, waiting, "FAILED")["statusReason"].startswith("DEPENDENCY")
    b.cancel_job(jobId="no-such-job", reason="fine")  # unknown ids answer 200
    b.terminate_job(jobId="no-such-job", reason="fine")
    assert "reason" in client_error(b.cancel_job, jobId=running, reason="")
    same_as_native(cluster, b, [running, waiting, cancelled])


# --- every other operation ---------------------------------------------------------------------
def test_environments_queues_policies_snapshot_and_tags(cluster: Cluster, b: Any) -> None:
    ce = b.create_compute_environment(
        computeEnvironmentName="extra",
        type="MANAGED",
        computeResources={"type": "EC2", "maxvCpus": 2, "subnets": ["s-1"], "minvCpus": 0},
        tags={"team": "a"},
    )
    assert ce["computeEnvironmentArn"].endswith(":compute-environment/extra")

    def taken_in() -> dict[str, Any] | None:  # CREATING until the scheduler takes it in
        detail = b.describe_compute_environments(computeEnvironments=[ce["computeEnvironmentArn"]])
        [env] = detail["computeEnvironments"]
        assert env["status"] in ("CREATING", "VALID")
        return env if env["status"] == "VALID" else None

    env = wait_for("the environment to be VALID", taken_in)
    assert (env["type"], env["state"], env["status"]) == ("MANAGED", "ENABLED", "VALID")
    assert env["computeResources"]["maxvCpus"] == 2 and env["tags"] == {"team": "a"}
    b.update_compute_environment(computeEnvironment="extra", state="DISABLED")

    policy = b.create_scheduling_policy(
        name="fair",
        fairsharePolicy={
            "shareDecaySeconds": 600,
            "computeReservation": 25,
            "shareDistribution": [{"shareIdentifier": "teamA", "weightFactor": 0.5}],
        },
        tags={"p": "1"},
    )
    b.update_scheduling_policy(arn=policy["arn"], fairsharePolicy={"computeReservation": 50})
    [got] = b.describe_scheduling_policies(arns=[policy["arn"]])["schedulingPolicies"]
    assert got["fairsharePolicy"]["computeReservation"] == 50
    assert {"arn": policy["arn"]} in b.list_scheduling_policies()["schedulingPolicies"]

    queue = b.create_job_queue(
        jobQueueName="fair",
        priority=10,
        schedulingPolicyArn=policy["arn"],
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
    )
    b.update_job_queue(jobQueue=queue["jobQueueArn"], priority=11)
    [q] = b.describe_job_queues(jobQueues=["fair"])["jobQueues"]
    assert (q["priority"], q["schedulingPolicyArn"]) == (11, policy["arn"])
    msg = client_error(b.delete_scheduling_policy, arn=policy["arn"])
    assert msg == "arn: scheduling policy 'fair' is used by job queues: fair"

    arn = definition(b, "fair-sleep", ["sleep", "60"], containerProperties={
        "resourceRequirements": [{"type": "VCPU", "value": "2"}]
    })  # fmt: skip
    hogs = [
        b.submit_job(jobName=f"hog{i}", jobQueue="fair", jobDefinition=arn, shareIdentifier="a")
        for i in range(5)
    ]
    # computeReservation 50 with one active share: half of the 6 vCPUs is held back for
    # shares not active yet, so one 2-vCPU job runs
    wait_for("one job to run", lambda: len(
        b.list_jobs(jobQueue="fair", jobStatus="RUNNING")["jobSummaryList"]
    ) == 1)  # fmt: skip
    snap = b.get_job_queue_snapshot(jobQueue="fair")
    assert [j["jobArn"] for j in snap["frontOfQueue"]["jobs"]] == [h["jobArn"] for h in hogs[1:]]
    assert snap["queueUtilization"]["totalCapacityUsage"] == [
        {"capacityUnit": "VCPU", "quantity": 2.0}
    ]
    assert snap["queueUtilization"]["fairshareUtilization"]["activeShareCount"] == 1
    msg = client_error(b.submit_job, jobName="x", jobQueue="fair", jobDefinition=arn)
    assert msg == "shareIdentifier: required: job queue 'fair' has a fair-share scheduling policy"

    for resource in (
        ce["computeEnvironmentArn"],
        queue["jobQueueArn"],
        arn,
        policy["arn"],
        hogs[0]["jobArn"],
    ):
        b.tag_resource(resourceArn=resource, tags={"x": "1", "y": "2"})
        b.untag_resource(resourceArn=resource, tagKeys=["x"])
        assert b.list_tags_for_resource(resourceArn=resource)["tags"]["y"] == "2"
    assert "child jobs" in client_error(
        b.list_tags_for_resource, resourceArn=hogs[0]["jobArn"] + ":0"
    )

    b.update_job_queue(jobQueue="fair", state="DISABLED")
    b.delete_job_queue(jobQueue="fair")  # terminates its jobs
    for h in hogs:
        wait_status(b, h["jobId"], "FAILED")
    b.delete_scheduling_policy(arn=policy["arn"])
    b.delete_compute_environment(computeEnvironment="extra")
    assert (
        b.describe_compute_environments(computeEnvironments=["extra"])["computeEnvironments"] == []
    )
    b.deregister_job_definition(jobDefinition=arn)
    [inactive] = b.describe_job_definitions(jobDefinitions=[arn])["jobDefinitions"]
    assert inactive["status"] == "INACTIVE"


def test_paginators_walk_every_page(cluster: Cluster, b: Any) -> None:
    for i in range(5):
        definition(b, f"page-{i}", ["true"])
        b.create_scheduling_policy(name=f"page-{i}")
        b.create_compute_environment(
            computeEnvironmentName=f"page-{i}", type="UNMANAGED", state="DISABLED"
        )
        b.create_job_queue(
            jobQueueName=f"page-{i}",
            priority=1,
            state="DISABLED",
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "local"}],
        )
    arn = definition(b, "page-job", ["true"])
    jobs = [submit(b, f"page-job-{i}", arn) for i in range(7)]
    for job_id in jobs:
        wait_status(b, job_id, *TERMINAL)

    def walk(op: str, key: str, **params: Any) -> list[Any]:
        pages = list(b.get_paginator(op).paginate(**params, PaginationConfig={"PageSize": 2}))
        assert len(pages) > 2 and all(len(p[key]) <= 2 for p in pages)
        return [item for p in pages for item in p[key]]

    listed = walk(
        "list_jobs", "jobSummaryList", jobQueue="default",
        filters=[{"name": "JOB_DEFINITION", "values": ["page-job"]}],
    )  # fmt: skip
    assert sorted(j["jobId"] for j in listed) == sorted(jobs)
    assert [j["jobId"] for j in listed] == jobs[::-1]  # newest first
    defs = walk("describe_job_definitions", "jobDefinitions", status="ACTIVE")
    assert {f"page-{i}" for i in range(5)} <= {d["jobDefinitionName"] for d in defs}
    queues = walk("describe_job_queues", "jobQueues")
    assert {f"page-{i}" for i in range(5)} <= {q["jobQueueName"] for q in queues}
    envs = walk("describe_compute_environments", "computeEnvironments")
    assert {f"page-{i}" for i in range(5)} <= {e["computeEnvironmentName"] for e in envs}
    policies = walk("list_scheduling_policies", "schedulingPolicies")
    assert {f"page-{i}" for i in range(5)} <= {p["arn"].rsplit("/", 1)[1] for p in policies}
    limited = b.get_paginator("list_jobs").paginate(
        jobQueue="default", jobStatus="SUCCEEDED", PaginationConfig={"MaxItems": 3, "PageSize": 2}
    )
    assert len(limited.build_full_result()["jobSummaryList"]) == 3


# --- validation ----------------------------------------------------------------------------------
def test_each_validation_rule_answers_a_client_exception(cluster: Cluster, b: Any) -> None:
    arn = definition(b, "rules", ["true"])

    def submit_error(**extra: Any) -> str:
        body = {"jobName": "rules", "jobQueue": "default", "jobDefinition": arn, **extra}
        return client_error(b.submit_job, **body)

    assert submit_error(arrayProperties={"size": 1}).startswith("arrayProperties.size: ")
    assert submit_error(arrayProperties={"size": 10_001}).startswith("arrayProperties.size: ")
    assert submit_error(retryStrategy={"attempts": 0}).startswith("retryStrategy.attempts: ")
    assert submit_error(retryStrategy={"attempts": 11}).startswith("retryStrategy.attempts: ")
    six = [{"onExitCode": str(i), "action": "RETRY"} for i in range(6)]
    assert "retryStrategy.evaluateOnExit" in submit_error(
        retryStrategy={"attempts": 2, "evaluateOnExit": six}
    )
    assert submit_error(retryStrategy={"evaluateOnExit": six[:1]}) == (
        "retryStrategy.attempts: RetryAttempts must be provided with retry strategy"
    )
    assert submit_error(timeout={"attemptDurationSeconds": 59}) == (
        "timeout.attemptDurationSeconds: must be at least 60 seconds"
    )
    deps = [{"jobId": f"j{i}"} for i in range(21)]
    assert submit_error(dependsOn=deps).startswith("dependsOn: ")
    env = [{"name": "AWS_BATCH_JOB_ID", "value": "x"}]
    assert submit_error(containerOverrides={"environment": env}) == (
        "containerOverrides.environment[0].name: names starting with AWS_BATCH are reserved"
    )
    assert submit_error(tags={f"k{i}": "v" for i in range(51)}) == "tags: at most 50 tags, got 51"
    assert submit_error(parameters={"big": "x" * 31 * 1024}) == (
        "SubmitJob payload size must be at most 30 KiB, got 32 KiB"
    )
    assert submit_error(jobQueue="nope").startswith("jobQueue: job queue 'nope' does not exist")
    assert "jobDefinition" in submit_error(jobDefinition="nope")
    assert "env" in client_error(
        b.register_job_definition,
        jobDefinitionName="bad-env",
        type="container",
        containerProperties={"command": ["true"], "environment": [
            {"name": "aws_batch_x", "value": "1"}
        ]},
    )  # fmt: skip
    assert (
        client_error(
            b.register_job_definition,
            jobDefinitionName="huge",
            type="container",
            containerProperties={"command": ["x" * 25 * 1024]},
        )
        == "job definition size must be at most 24 KiB, got 26 KiB"
    )
    assert client_error(b.deregister_job_definition, jobDefinition="nope:1") == (
        "job definition nope:1 does not exist"
    )
    assert client_error(b.describe_jobs, jobs=[]) == "jobs: required: a list of 1-100 job ids"
    assert client_error(b.list_jobs) == (
        "jobQueue: exactly one of jobQueue, arrayJobId, multiNodeJobId is required"
    )


def test_compute_environment_lifecycle_rules(cluster: Cluster, b: Any) -> None:
    for i in range(4):
        b.create_compute_environment(computeEnvironmentName=f"life-{i}", type="UNMANAGED")
    assert (
        client_error(
            b.create_compute_environment, computeEnvironmentName="life-0", type="UNMANAGED"
        )
        == "compute environment 'life-0' already exists"
    )
    four = [{"order": i, "computeEnvironment": f"life-{i}"} for i in range(4)]
    assert "computeEnvironmentOrder" in client_error(
        b.create_job_queue, jobQueueName="life", priority=1, computeEnvironmentOrder=four
    )
    b.create_job_queue(jobQueueName="life", priority=1, computeEnvironmentOrder=four[:3])
    assert client_error(b.delete_compute_environment, computeEnvironment="life-0") == (
        "computeEnvironment: 'life-0' must be DISABLED first; "
        "computeEnvironment: 'life-0' is used by job queues: life"
    )
    b.update_compute_environment(computeEnvironment="life-0", state="DISABLED")
    assert client_error(b.delete_compute_environment, computeEnvironment="life-0") == (
        "computeEnvironment: 'life-0' is used by job queues: life"
    )
    assert client_error(b.delete_job_queue, jobQueue="life") == (
        "jobQueue: job queue 'life' must be DISABLED first"
    )
    b.update_job_queue(jobQueue="life", state="DISABLED")
    b.delete_job_queue(jobQueue="life")
    b.delete_compute_environment(computeEnvironment="life-0")
    assert client_error(b.delete_compute_environment, computeEnvironment="life-0") == (
        "compute environment 'life-0' does not exist"
    )
    assert client_error(b.delete_job_queue, jobQueue="life") == "job queue 'life' does not exist"
    assert b.describe_job_queues(jobQueues=["life"])["jobQueues"] == []
