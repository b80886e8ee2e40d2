"""The plain model: AWS's pattern rule, retry decisions, resource fit, wire round trips."""

from __future__ import annotations

import pytest

from mnp.spec.arns import job_definition_arn, name_from_arn, queue_arn
from mnp.spec.definitions import EvaluateOnExit, RetryStrategy, glob_match
from mnp.spec.jobs import GangAttemptState
from mnp.spec.resources import ContainerSpec, Resources, resources_from_wire
from mnp.spec.states import JobStatus
from tests.unit.helpers_core import HOSTILE


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("Timeout", "Timeout", True),
        ("Timeout", "timeout", False),
        ("Timeout", "Timeout!", False),
        ("Timeout", "", False),
        ("Host EC2*", "Host EC2 (instance i-1) terminated.", True),
        ("Host EC2*", "Host EC", False),
        ("Host EC2*", "Host EC2", True),
        ("*", "", True),
        ("*", "anything at all", True),
        ("1*", "1", True),
        ("1*", "137", True),
        ("1*", "21", False),
        ("", "", True),
        ("", "x", False),
        ("a*b", "a*b", True),  # a * inside the pattern is literal
        ("a*b", "axb", False),
        ("a.b", "axb", False),
        ("a b; $x", "a b; $x", True),
    ],
)
def test_glob_match(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


@pytest.mark.parametrize(
    ("rule", "exit_code", "reason", "status_reason", "expected"),
    [
        (EvaluateOnExit("RETRY", on_exit_code="1"), 1, None, None, True),
        (EvaluateOnExit("RETRY", on_exit_code="1"), 10, None, None, False),
        (EvaluateOnExit("RETRY", on_exit_code="1*"), 137, None, None, True),
        (EvaluateOnExit("RETRY", on_exit_code="*"), 3, None, None, True),
        (EvaluateOnExit("RETRY", on_reason="OutOfMemory*"), 1, "OutOfMemoryError: x", None, True),
        (EvaluateOnExit("RETRY", on_reason="OutOfMemory*"), 1, None, None, False),
        (EvaluateOnExit("RETRY", on_status_reason="Host *"), None, None, "Host lost: n1", True),
        (
            EvaluateOnExit("RETRY", on_exit_code="1", on_reason="Boom*"),
            1,
            "Boom!",
            None,
            True,
        ),
        (
            EvaluateOnExit("RETRY", on_exit_code="1", on_reason="Boom*"),
            2,
            "Boom!",
            None,
            False,
        ),
        (
            EvaluateOnExit("RETRY", on_exit_code="1", on_reason="Boom*"),
            1,
            "Bang",
            None,
            False,
        ),
        (
            EvaluateOnExit(
                "EXIT", on_exit_code="1", on_reason="Boom*", on_status_reason="Essential*"
            ),
            1,
            "Boom",
            "Essential container in task exited",
            True,
        ),
        (
            EvaluateOnExit(
                "EXIT", on_exit_code="1", on_reason="Boom*", on_status_reason="Essential*"
            ),
            1,
            "Boom",
            "Host lost",
            False,
        ),
        (EvaluateOnExit("RETRY"), 5, "r", "s", True),
    ],
    ids=[
        "code-exact",
        "code-exact-miss",
        "code-prefix",
        "code-any",
        "reason-prefix",
        "reason-absent",
        "status-reason",
        "and-both-match",
        "and-code-misses",
        "and-reason-misses",
        "and-three-match",
        "and-three-one-misses",
        "no-conditions",
    ],
)
def test_evaluate_on_exit_ands_its_conditions(
    rule: EvaluateOnExit,
    exit_code: int | None,
    reason: str | None,
    status_reason: str | None,
    expected: bool,
) -> None:
    assert rule.matches(exit_code, reason, status_reason) is expected


RETRY_1 = EvaluateOnExit("RETRY", on_exit_code="1*")
EXIT_2 = EvaluateOnExit("EXIT", on_exit_code="2")
EXIT_ANY = EvaluateOnExit("EXIT", on_reason="*")
RETRY_HOST = EvaluateOnExit("RETRY", on_status_reason="Host*")


@pytest.mark.parametrize(
    ("strategy", "made", "exit_code", "status_reason", "expected"),
    [
        (RetryStrategy(1), 1, 1, None, False),
        (RetryStrategy(3), 1, 1, None, True),
        (RetryStrategy(3), 2, 1, None, True),
        (RetryStrategy(3), 3, 1, None, False),
        (RetryStrategy(3), 4, 1, None, False),
        (RetryStrategy(3, (RETRY_1,)), 3, 1, None, False),
        (RetryStrategy(3, (EXIT_2,)), 1, 2, None, False),
        (RetryStrategy(3, (EXIT_2,)), 1, 3, None, True),
        (RetryStrategy(3, (RETRY_1, EXIT_ANY)), 1, 137, None, True),
        (RetryStrategy(3, (RETRY_1, EXIT_ANY)), 1, 2, None, False),
        (RetryStrategy(3, (EXIT_ANY, RETRY_1)), 1, 1, None, False),
        (RetryStrategy(3, (RETRY_HOST, EXIT_ANY)), 1, None, "Host lost: node n1", True),
        (RetryStrategy(3, (RETRY_HOST, EXIT_ANY)), 1, 1, "Essential container", False),
    ],
    ids=[
        "default-one-attempt",
        "attempts-left",
        "last-attempt-left",
        "exhausted",
        "over-exhausted",
        "exhausted-even-if-rule-says-retry",
        "exit-rule-stops",
        "unmatched-is-retried",
        "first-match-retry-wins",
        "falls-through-to-exit",
        "first-match-exit-wins",
        "host-lost-retried",
        "catch-all-exit",
    ],
)
def test_should_retry(
    strategy: RetryStrategy,
    made: int,
    exit_code: int | None,
    status_reason: str | None,
    expected: bool,
) -> None:
    assert strategy.should_retry(made, exit_code, None, status_reason) is expected


def test_retry_strategy_wire_round_trip_upper_cases_action() -> None:
    wire = {
        "attempts": 4,
        "evaluateOnExit": [
            {"onExitCode": "1*", "action": "retry"},
            {"onReason": "*", "onStatusReason": "Host*", "action": "Exit"},
        ],
    }
    strategy = RetryStrategy.from_wire(wire)
    assert strategy == RetryStrategy(
        4,
        (
            EvaluateOnExit("RETRY", on_exit_code="1*"),
            EvaluateOnExit("EXIT", on_status_reason="Host*", on_reason="*"),
        ),
    )
    assert RetryStrategy.from_wire(strategy.to_wire()) == strategy
    assert RetryStrategy.from_wire(None) == RetryStrategy(1, ())
    assert RetryStrategy.from_wire({}) == RetryStrategy(1, ())


@pytest.mark.parametrize(
    ("need", "capacity", "expected"),
    [
        (Resources(4, 4096, 1), Resources(4, 4096, 1), None),
        (Resources(1, 0, 0), Resources(8, 16384, 0), None),
        (Resources(64, 0, 0), Resources(8, 16384, 0), "needs 64 vCPUs, largest node has 8"),
        (Resources(0.5, 0, 0), Resources(0.25, 0, 0), "needs 0.5 vCPUs, largest node has 0.25"),
        (
            Resources(1, 32768, 0),
            Resources(8, 16384, 0),
            "needs 32768 MiB memory, largest node has 16384 MiB",
        ),
        (Resources(1, 0, 2), Resources(8, 16384, 0), "needs 2 GPUs, largest node has 0"),
        (Resources(64, 32768, 2), Resources(8, 16384, 0), "needs 64 vCPUs, largest node has 8"),
    ],
    ids=["exact", "small", "vcpus", "fractional", "memory", "gpus", "vcpus-reported-first"],
)
def test_resources_shortfall(need: Resources, capacity: Resources, expected: str | None) -> None:
    assert need.shortfall(capacity) == expected
    assert need.fits_in(capacity) is (expected is None)


def test_resources_arithmetic() -> None:
    a = Resources(4, 4096, 2)
    b = Resources(1.5, 1000, 1)
    assert a.minus(b) == Resources(2.5, 3096, 1)
    assert a.minus(b).plus(b) == a
    assert a == Resources(4, 4096, 2), "minus/plus return new objects"


def test_resources_from_wire_reads_requirements_over_a_base() -> None:
    base = Resources(2, 1024, 0)
    over = resources_from_wire({"resourceRequirements": [{"type": "GPU", "value": "1"}]}, base)
    assert over == Resources(2, 1024, 1)
    assert base == Resources(2, 1024, 0)
    assert resources_from_wire({"vcpus": 3, "memory": 512}) == Resources(3, 512, 0)
    assert resources_from_wire(
        {"resourceRequirements": [{"type": "vcpu", "value": "0.5"}]}
    ) == Resources(0.5, 0, 0)


def test_container_spec_round_trip_keeps_hostile_values_and_extra_fields() -> None:
    spec = ContainerSpec(
        command=["sh", "-c", HOSTILE],
        environment={"A B": HOSTILE, "EMPTY": ""},
        resources=Resources(2.5, 300, 1),
        image="img:latest",
        extra={"volumes": [{"name": "v", "host": {"sourcePath": "/tmp/a b"}}]},
    )
    assert ContainerSpec.from_wire(spec.to_wire()) == spec


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (queue_arn("my-q"), "job-queue", "my-q"),
        ("my-q", "job-queue", "my-q"),
        (job_definition_arn("d", 3), "job-definition", "d:3"),
        (queue_arn("x"), "compute-environment", queue_arn("x")),
    ],
)
def test_name_from_arn(value: str, kind: str, expected: str) -> None:
    assert name_from_arn(value, kind) == expected


def test_gang_state_reads_what_earlier_heads_wrote_and_writes_the_same_keys() -> None:
    old = {
        "port": 29517,
        "key": ["-----BEGIN OPENSSH PRIVATE KEY-----\n", "ssh-ed25519 AAAA mnp-j"],
        "ready_sent": True,
        "sessions": 2,
        "hang_after": 123456,
        "hang_reason": "MPI process on node n1 ended",
        "failure": "Node j#1 on n1 (127.0.0.2) failed: 3",
        "outcome": "RUNNABLE",
    }
    state = GangAttemptState.from_doc(old)
    assert state.outcome == JobStatus.RUNNABLE and state.key is not None
    assert state.to_doc() == old
    assert GangAttemptState.from_doc(None).to_doc() == {}
    # a launch that ended wrote "sessions": 0; it reads as no open session
    assert GangAttemptState.from_doc({"port": 29500, "sessions": 0}).sessions == 0
