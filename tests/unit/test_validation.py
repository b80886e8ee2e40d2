"""Edge validation: valid requests parse; invalid ones report every problem with its path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import BaseModel

from mnp.errors import FieldError, InvalidInput
from mnp.service.core import JOB_DEFINITION_MAX, SUBMIT_MAX
from mnp.service.models import CreateJobQueue, RegisterJobDefinition, SubmitJob, Timeout
from mnp.service.validation import check_timeout, parse
from tests.unit.helpers_core import HOSTILE

NAME_MSG = "must be 1-128 letters, digits, hyphens and underscores, starting with a letter or digit"


def definition(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "jobDefinitionName": "def",
        "type": "container",
        "containerProperties": {"command": ["echo", "Ref::x"]},
    }
    body.update(extra)
    return body


def submission(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"jobName": "job", "jobQueue": "q", "jobDefinition": "def"}
    body.update(extra)
    return body


def errors_of(
    model: type[BaseModel], body: Any, max_bytes: int | None = None, what: str = "request"
) -> list[FieldError]:
    with pytest.raises(InvalidInput) as err:
        parse(model, body, max_bytes, what)
    assert str(err.value) == "; ".join(str(e) for e in err.value.errors)
    return err.value.errors


def paths(errors: list[FieldError]) -> set[str]:
    return {e.path for e in errors}


# --- valid ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        definition(),
        definition(jobDefinitionName="x" * 128),
        definition(
            parameters={"x": HOSTILE},
            retryStrategy={
                "attempts": 10,
                "evaluateOnExit": [
                    {"onExitCode": "1*", "action": "retry"},
                    {"onReason": "CannotPullContainerError:*", "action": "EXIT"},
                    {"onStatusReason": "Host EC2*", "action": "RETRY"},
                    {"onExitCode": "137", "onReason": "Out of memory.", "action": "EXIT"},
                    {"onReason": "*", "action": "EXIT"},
                ],
            },
            timeout={"attemptDurationSeconds": 60},
            tags={f"k{i}": "v" * 256 for i in range(50)},
            platformCapabilities=["EC2"],
        ),
        definition(
            containerProperties={
                "command": ["python", "-c", HOSTILE],
                "image": "busybox",
                "environment": [{"name": "MY_VAR", "value": HOSTILE}],
                "resourceRequirements": [
                    {"type": "VCPU", "value": "0.5"},
                    {"type": "MEMORY", "value": "4"},
                    {"type": "GPU", "value": "0"},
                ],
                "volumes": [{"name": "scratch", "host": {"sourcePath": "/tmp/a b"}}],
                "mountPoints": [{"containerPath": "/s", "sourceVolume": "scratch"}],
                "privileged": False,
            }
        ),
    ],
    ids=["minimal", "longest-name", "full", "container"],
)
def test_valid_job_definitions(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    parsed = parse(RegisterJobDefinition, body, JOB_DEFINITION_MAX, "job definition")
    assert parsed.jobDefinitionName == body["jobDefinitionName"]
    assert body == before, "parse does not modify its input"


@pytest.mark.parametrize(
    "body",
    [
        submission(),
        submission(jobName="A-b_9"),
        submission(arrayProperties={"size": 2}),
        submission(arrayProperties={"size": 10_000}),
        submission(arrayProperties={"size": 5}, dependsOn=[{"type": "SEQUENTIAL"}]),
        submission(arrayProperties={"size": 5}, dependsOn=[{"jobId": "x", "type": "N_TO_N"}]),
        submission(dependsOn=[{"jobId": f"j{i}"} for i in range(20)]),
        submission(retryStrategy={"attempts": 1}),
        submission(retryStrategy={"attempts": 10}),
        submission(timeout={"attemptDurationSeconds": 60}),
        submission(
            parameters={"msg": HOSTILE},
            containerOverrides={
                "command": ["echo", HOSTILE],
                "environment": [{"name": "X Y", "value": HOSTILE}],
                "resourceRequirements": [{"type": "VCPU", "value": "2"}],
            },
            tags={f"t{i}": "v" for i in range(50)},
        ),
    ],
    ids=[
        "minimal",
        "name-chars",
        "array-2",
        "array-10000",
        "sequential",
        "n-to-n",
        "20-deps",
        "attempts-1",
        "attempts-10",
        "timeout",
        "overrides",
    ],
)
def test_valid_submissions(body: dict[str, Any]) -> None:
    parsed = parse(SubmitJob, body, SUBMIT_MAX, "SubmitJob payload")
    assert parsed.jobName == body["jobName"]


# --- invalid: each problem with its path ------------------------------------------------------

INVALID_SUBMISSIONS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("array-1", submission(arrayProperties={"size": 1}), {"arrayProperties.size": "2"}),
    ("attempts-0", submission(retryStrategy={"attempts": 0}), {"retryStrategy.attempts": "1"}),
    ("attempts-11", submission(retryStrategy={"attempts": 11}), {"retryStrategy.attempts": "10"}),
    (
        "6-evaluate-on-exit",
        submission(
            retryStrategy={
                "attempts": 2,
                "evaluateOnExit": [{"onExitCode": str(i), "action": "RETRY"} for i in range(6)],
            }
        ),
        {"retryStrategy.evaluateOnExit": "at most 5"},
    ),
    (
        "21-deps",
        submission(dependsOn=[{"jobId": f"j{i}"} for i in range(21)]),
        {"dependsOn": "at most 20"},
    ),
    (
        "reserved-env",
        submission(containerOverrides={"environment": [{"name": "AWS_BATCH_X", "value": "1"}]}),
        {"containerOverrides.environment[0].name": "reserved"},
    ),
    (
        "reserved-env-lower-case",
        submission(
            containerOverrides={
                "environment": [{"name": "OK", "value": "1"}, {"name": "aws_batch_job_id"}]
            }
        ),
        {"containerOverrides.environment[1].name": "reserved"},
    ),
    ("unknown-field", submission(bogus=1), {"bogus": "unknown field"}),
    (
        "unknown-nested-field",
        submission(containerOverrides={"comand": ["x"]}),
        {"containerOverrides.comand": "unknown field"},
    ),
    ("missing-fields", {"jobName": "j"}, {"jobQueue": "required", "jobDefinition": "required"}),
    ("51-tags", submission(tags={f"t{i}": "v" for i in range(51)}), {"tags": "at most 50"}),
    (
        "long-tag",
        submission(tags={"k" * 129: "v", "ok": "v" * 257}),
        {f"tags.{'k' * 129}": "1-128", "tags.ok": "256"},
    ),
    (
        "retry-rules",
        submission(
            retryStrategy={
                "evaluateOnExit": [
                    {"onExitCode": "abc", "action": "MAYBE"},
                    {"onReason": "a*b", "action": "EXIT"},
                    {"action": "RETRY"},
                ]
            }
        ),
        {
            "retryStrategy.attempts": "RetryAttempts must be provided",
            "retryStrategy.evaluateOnExit[0].action": "RETRY or EXIT",
            "retryStrategy.evaluateOnExit[0].onExitCode": "digits",
            "retryStrategy.evaluateOnExit[1].onReason": "letters",
            "retryStrategy.evaluateOnExit[2]": "at least one of",
        },
    ),
    (
        "dependencies",
        submission(
            dependsOn=[
                {"type": "SEQUENTIAL"},
                {},
                {"jobId": "b", "type": "N_TO_N"},  # a plain dependency on a job that is no array
                {"jobId": "c", "type": "SEQUENTIAL"},
            ]
        ),
        {
            "dependsOn[0].type": "needs an array job",
            "dependsOn[1].jobId": "required unless",
        },
    ),
    (
        "array dependencies",
        submission(arrayProperties={"size": 2}, dependsOn=[{"jobId": "a", "type": "SEQUENTIAL"}]),
        {"dependsOn[0].jobId": "must be absent"},
    ),
    (
        "overrides",
        submission(
            containerOverrides={
                "command": ["ok", ""],
                "resourceRequirements": [
                    {"type": "VCPU", "value": "0"},
                    {"type": "MEMORY", "value": "3"},
                    {"type": "GPU", "value": "1.5"},
                    {"type": "VCPU", "value": "many"},
                ],
            }
        ),
        {
            "containerOverrides.command": "empty strings",
            "containerOverrides.resourceRequirements[0].value": "greater than 0",
            "containerOverrides.resourceRequirements[1].value": "at least 4",
            "containerOverrides.resourceRequirements[2].value": "whole number",
            "containerOverrides.resourceRequirements[3].type": "more than once",
            "containerOverrides.resourceRequirements[3].value": "must be a number",
        },
    ),
    (
        "multinode-overrides",
        submission(nodeOverrides={"numNodes": 0, "nodePropertyOverrides": [{"targetNodes": "x"}]}),
        {
            "nodeOverrides.numNodes": "greater than or equal to 1",
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b, e) for _, b, e in INVALID_SUBMISSIONS],
    ids=[name for name, _, _ in INVALID_SUBMISSIONS],
)
def test_invalid_submissions_report_every_problem(
    body: dict[str, Any], expected: dict[str, str]
) -> None:
    errors = errors_of(SubmitJob, body, SUBMIT_MAX, "SubmitJob payload")
    assert paths(errors) == set(expected), [str(e) for e in errors]
    for e in errors:
        assert expected[e.path] in e.message, str(e)


def test_many_schema_problems_are_reported_together() -> None:
    body = submission(
        jobName="bad name; $HOME",
        arrayProperties={"size": 1},
        retryStrategy={
            "attempts": 11,
            "evaluateOnExit": [{"onExitCode": "1", "action": "RETRY"}] * 6,
        },
        dependsOn=[{"jobId": f"j{i}"} for i in range(21)],
        timeout={"attemptDurationSeconds": 0},
        surprise=True,
    )
    errors = errors_of(SubmitJob, body)
    assert paths(errors) == {
        "jobName",
        "arrayProperties.size",
        "retryStrategy.attempts",
        "retryStrategy.evaluateOnExit",
        "dependsOn",
        "timeout.attemptDurationSeconds",
        "surprise",
    }


def test_many_cross_field_problems_are_reported_together() -> None:
    body = submission(
        containerOverrides={
            "environment": [{"name": "AWS_BATCH_A"}, {"name": "fine"}, {"name": "AWS_BATCHB"}]
        },
        tags={f"t{i}": "v" for i in range(51)},
        dependsOn=[{"type": "SEQUENTIAL"}],
        retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "RETRY"}]},
    )
    errors = errors_of(SubmitJob, body)
    assert paths(errors) == {
        "containerOverrides.environment[0].name",
        "containerOverrides.environment[2].name",
        "tags",
        "dependsOn[0].type",
        "retryStrategy.evaluateOnExit[0]",
    }


def test_schema_and_cross_field_problems_are_reported_together() -> None:
    body = submission(
        arrayProperties={"size": 1},
        containerOverrides={"environment": [{"name": "AWS_BATCH_X", "value": "1"}]},
    )
    errors = errors_of(SubmitJob, body)
    assert paths(errors) == {"arrayProperties.size", "containerOverrides.environment[0].name"}


@pytest.mark.parametrize(
    "name",
    [
        "my job",
        "job;rm",
        "$HOME",
        "job\n",
        "a\nb",
        "it's",
        '"quoted"',
        "",
        "-leading-hyphen",
        "_leading_underscore",
        "x" * 129,
        "caf\u00e9",
        "a/b",
    ],
)
def test_hostile_job_names_are_refused(name: str) -> None:
    errors = errors_of(SubmitJob, submission(jobName=name))
    assert [(e.path, e.message) for e in errors] == [("jobName", NAME_MSG)]
    errors = errors_of(RegisterJobDefinition, definition(jobDefinitionName=name))
    assert [(e.path, e.message) for e in errors] == [("jobDefinitionName", NAME_MSG)]


@pytest.mark.parametrize("code", ["1\n", "1*\n", "137\n"])
def test_exit_code_pattern_with_trailing_newline_is_refused(code: str) -> None:
    retry = {"attempts": 2, "evaluateOnExit": [{"onExitCode": code, "action": "RETRY"}]}
    errors = errors_of(SubmitJob, submission(retryStrategy=retry))
    assert paths(errors) == {"retryStrategy.evaluateOnExit[0].onExitCode"}


@pytest.mark.parametrize("code", ["1 ", " 1", "1*1", "-1", "x"])
def test_exit_code_pattern_must_be_digits(code: str) -> None:
    retry = {"attempts": 2, "evaluateOnExit": [{"onExitCode": code, "action": "RETRY"}]}
    errors = errors_of(SubmitJob, submission(retryStrategy=retry))
    assert paths(errors) == {"retryStrategy.evaluateOnExit[0].onExitCode"}


# --- sizes ------------------------------------------------------------------------------------


def padded(body: dict[str, Any], total: int) -> dict[str, Any]:
    """``body`` with a parameter that makes its compact JSON exactly ``total`` bytes."""
    body = {**body, "parameters": {"pad": ""}}
    size = len(json.dumps(body, separators=(",", ":")).encode())
    body["parameters"] = {"pad": "x" * (total - size)}
    assert len(json.dumps(body, separators=(",", ":")).encode()) == total
    return body


def test_submission_payload_limit_is_30_kib() -> None:
    parse(SubmitJob, padded(submission(), 30 * 1024), SUBMIT_MAX, "SubmitJob payload")
    errors = errors_of(
        SubmitJob, padded(submission(), 30 * 1024 + 1), SUBMIT_MAX, "SubmitJob payload"
    )
    assert [(e.path, e.message) for e in errors] == [
        ("", "SubmitJob payload size must be at most 30 KiB, got 31 KiB")
    ]


def test_job_definition_limit_is_24_kib() -> None:
    parse(RegisterJobDefinition, padded(definition(), 24 * 1024), JOB_DEFINITION_MAX)
    body = padded(definition(), 25 * 1024)
    errors = errors_of(RegisterJobDefinition, body, JOB_DEFINITION_MAX, "job definition")
    assert [(e.path, e.message) for e in errors] == [
        ("", "job definition size must be at most 24 KiB, got 25 KiB")
    ]
    parse(SubmitJob, padded(submission(), 25 * 1024), SUBMIT_MAX)  # fine as a submission


def test_size_is_reported_with_the_other_problems() -> None:
    body = padded(submission(arrayProperties={"size": 1}), 40 * 1024)
    errors = errors_of(SubmitJob, body, SUBMIT_MAX, "SubmitJob payload")
    assert paths(errors) == {"", "arrayProperties.size"}


# --- job definitions --------------------------------------------------------------------------

INVALID_DEFINITIONS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("no-container", definition(containerProperties=None), {"containerProperties": "required"}),
    (
        "reserved-env",
        definition(
            containerProperties={
                "command": ["x"],
                "environment": [{"name": "A", "value": "1"}, {"name": "AWS_BATCH_X"}],
            }
        ),
        {"containerProperties.environment[1].name": "reserved"},
    ),
    (
        "mount-without-volume",
        definition(
            containerProperties={
                "command": ["x"],
                "volumes": [{"name": "a"}],
                "mountPoints": [{"containerPath": "/b", "sourceVolume": "b; $x"}],
            }
        ),
        {"containerProperties.mountPoints[0].sourceVolume": "no volume named"},
    ),
    (
        "multinode",
        definition(type="multinode", containerProperties=None, nodeProperties={"numNodes": 2}),
        {"nodeProperties.mainNode": "required", "nodeProperties.nodeRangeProperties": "required"},
    ),
    ("bad-type", definition(type="lambda"), {"type": "container"}),
    (
        "retry-and-tags",
        definition(
            retryStrategy={"attempts": 2, "evaluateOnExit": [{"action": "RETRY"}]},
            tags={f"t{i}": "v" for i in range(51)},
        ),
        {"retryStrategy.evaluateOnExit[0]": "at least one of", "tags": "at most 50"},
    ),
    (
        "schema",
        definition(
            retryStrategy={"attempts": 0},
            timeout={"attemptDurationSeconds": 0},
            schedulingPriority=10_000,
            extra=1,
        ),
        {
            "retryStrategy.attempts": "1",
            "timeout.attemptDurationSeconds": "1",
            "schedulingPriority": "9999",
            "extra": "unknown field",
        },
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b, e) for _, b, e in INVALID_DEFINITIONS],
    ids=[name for name, _, _ in INVALID_DEFINITIONS],
)
def test_invalid_job_definitions_report_every_problem(
    body: dict[str, Any], expected: dict[str, str]
) -> None:
    body = {k: v for k, v in body.items() if v is not None}
    errors = errors_of(RegisterJobDefinition, body, JOB_DEFINITION_MAX, "job definition")
    assert paths(errors) == set(expected), [str(e) for e in errors]
    for e in errors:
        assert expected[e.path] in e.message, str(e)


# --- timeouts and the rest --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "floor", "expected"),
    [
        (None, 60, []),
        (60, 60, []),
        (3600, 60, []),
        (59, 60, [FieldError("timeout.attemptDurationSeconds", "must be at least 60 seconds")]),
        (1, 60, [FieldError("timeout.attemptDurationSeconds", "must be at least 60 seconds")]),
        (1, 1, []),
        (1, 1.5, [FieldError("timeout.attemptDurationSeconds", "must be at least 1.5 seconds")]),
    ],
)
def test_check_timeout_floor(seconds: int | None, floor: float, expected: list[FieldError]) -> None:
    assert check_timeout(Timeout(attemptDurationSeconds=seconds), floor) == expected
    assert check_timeout(None, floor) == []


def test_check_timeout_path_can_be_named() -> None:
    errors = check_timeout(Timeout(attemptDurationSeconds=5), 60, "override.timeout")
    assert [e.path for e in errors] == ["override.timeout.attemptDurationSeconds"]


def test_queue_order_values_must_be_unique() -> None:
    body = {
        "jobQueueName": "q",
        "priority": 1,
        "computeEnvironmentOrder": [
            {"order": 1, "computeEnvironment": "a"},
            {"order": 1, "computeEnvironment": "b"},
        ],
    }
    errors = errors_of(CreateJobQueue, body)
    assert paths(errors) == {"computeEnvironmentOrder"}


def test_body_that_is_not_an_object_is_refused() -> None:
    errors = errors_of(SubmitJob, ["not", "an", "object"])
    assert len(errors) == 1
