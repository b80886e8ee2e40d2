"""Answer translation for the AWS Batch wire: mnp's own fields out, AWS's constants in; and
the one operations table both front doors are built from."""

from __future__ import annotations

from mnp.api.aws import batch
from mnp.api.aws import batch_shapes as shapes
from mnp.service.operations import OPERATIONS, Answer


def test_job_detail_and_summary_lose_only_mnp_fields() -> None:
    native = {
        "jobId": "j",
        "status": "RUNNING",
        "container": {"exitCode": 0, "logStreamName": "d/default/x"},
        "attempts": [{"container": {"exitCode": 1}}],
        "nodeDetails": {"nodeIndex": 1, "isMainNode": False},
        "history": [{"status": "SUBMITTED", "at": 1}],
        "jobQueueName": "q",
        "computeEnvironment": "ce",
        "nodeId": "n",
        "nodeAddress": "127.0.0.2",
        "attempt": 2,
    }
    aws = {k: v for k, v in native.items() if k in ("jobId", "status", "container", "attempts")}
    aws["nodeDetails"] = native["nodeDetails"]
    assert shapes.list_jobs({"jobSummaryList": [native], "nextToken": "5"}) == {
        "jobSummaryList": [aws],
        "nextToken": "5",
    }
    # a job's detail also gets what AWS always answers (tests/unit/test_aws_wire_shapes.py)
    detail = {
        **aws,
        "container": {**shapes.container_properties({}), **native["container"]},
        "attempts": [
            {"container": {"exitCode": 1}, "taskProperties": [{"containers": [{"exitCode": 1}]}]}
        ],
        "parameters": {},
        "tags": {},
        "eksAttempts": [],
    }
    assert shapes.job_detail(native) == detail
    assert shapes.describe_jobs({"jobs": [native]}) == {"jobs": [detail]}
    assert "history" in native  # the native answer is left alone


def test_compute_environment_without_compute_resources_shows_its_local_vcpus() -> None:
    native = {
        "computeEnvironmentName": "local",
        "type": "MANAGED",
        "mnp": {"provider": "local", "nodes": 3, "vcpus": 4},
    }
    got = shapes.compute_environment(native)
    assert "mnp" not in got
    assert got["containerOrchestrationType"] == "ECS"
    assert got["computeResources"] == {
        "type": "EC2",
        "minvCpus": 12,
        "maxvCpus": 12,
        "desiredvCpus": 12,
        "instanceTypes": ["optimal"],
        "subnets": [],
    }
    given = {**native, "computeResources": {"type": "SPOT", "maxvCpus": 64, "subnets": ["s"]}}
    assert shapes.compute_environment(given)["computeResources"] == given["computeResources"]
    unmanaged = {"computeEnvironmentName": "u", "type": "UNMANAGED", "mnp": {"nodes": 0}}
    assert "computeResources" not in shapes.compute_environment(unmanaged)


def test_job_definition_gets_an_orchestration_type() -> None:
    d = {"jobDefinitionName": "d", "revision": 1, "type": "container"}
    aws = {
        **d,
        "parameters": {},
        "tags": {},
        "platformCapabilities": ["EC2"],
        "containerOrchestrationType": "ECS",
    }
    assert shapes.describe_job_definitions({"jobDefinitions": [d], "nextToken": "1"}) == {
        "jobDefinitions": [aws],
        "nextToken": "1",
    }


def test_one_table_serves_both_front_doors() -> None:
    assert set(batch.TRANSLATE) == set(Answer)
    aws = [op.aws for op in OPERATIONS if op.aws is not None]
    assert len(aws) == len(set(aws)) == 25
    assert len(batch.OPERATIONS) + len(batch.TAG_OPERATIONS) == 25
    natives = [op.native for op in OPERATIONS]
    assert len(natives) == len(set(natives))
    # the native name is the AWS name in camelCase
    assert all(op.native == op.aws[0].lower() + op.aws[1:] for op in OPERATIONS if op.aws)
    assert {op.native for op in OPERATIONS if op.aws is None} == {
        "listNodes", "createUser", "listUsers", "deleteUser", "whoAmI",
        "addHost", "removeHost", "listHosts",
        "requeueJob", "holdJob", "releaseJob", "updateJob", "describeShares", "explainJob",
        "createRole", "listRoles", "deleteRole",
        "dashboardOverview", "dashboardJobs", "getDashboardLayout", "putDashboardLayout",
    }
