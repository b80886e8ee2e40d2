"""Multi-node parallel job shapes (mnp.spec.noderanges) and their edge validation
(mnp.service.validation).

``targetNodes`` forms, coverage, "the narrower range wins", ``nodeOverrides`` rules, and
per-node overrides. Pure functions first, then a few submissions through the real Service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.errors import FieldError, InvalidInput
from mnp.service import validation as v
from mnp.spec.noderanges import (
    MAX_RANGES,
    NodeSpec,
    Range,
    check_node_properties,
    parse_range,
    resolve_nodes,
)
from mnp.spec.resources import Resources
from tests.unit.helpers_core import HOSTILE, Head

SHAPE_MSG = "must look like 0:3, :3, 2: or 4"


def rng(target: str, command: list[str] | None = None, **container: Any) -> dict[str, Any]:
    """One ``nodeRangeProperties`` entry; ``command=None`` leaves the container without one."""
    c: dict[str, Any] = dict(container)
    if command is not None:
        c["command"] = command
    return {"targetNodes": target, "container": c}


def props(num: int, main: int, *ranges: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"numNodes": num, "mainNode": main, "nodeRangeProperties": list(ranges), **extra}


def as_dict(errors: list[FieldError]) -> dict[str, str]:
    return {e.path: e.message for e in errors}


def resolved(
    p: dict[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[NodeSpec, list[list[str]]]:
    spec, errors = resolve_nodes(p, overrides)
    assert errors == []
    assert spec is not None
    return spec, [c.command for c in spec.containers]


def node_def(**node_properties: Any) -> dict[str, Any]:
    return {
        "jobDefinitionName": "mnp",
        "type": "multinode",
        "nodeProperties": node_properties,
    }


def parse_errors(model: Any, body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        v.parse(model, body)
    return as_dict(err.value.errors)


# --- parse_range ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("0:3", 0, 3),
        (":3", 0, 3),
        ("2:", 2, None),
        ("4", 4, 4),
        ("0", 0, 0),
        ("3:3", 3, 3),
        (":", 0, None),
        (" 1:2 ", 1, 2),
        ("007:010", 7, 10),
    ],
)
def test_parse_range_accepts_every_form(text: str, start: int, end: int | None) -> None:
    r = parse_range(text)
    assert (r.start, r.end, r.text) == (start, end, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", SHAPE_MSG),
        ("a", SHAPE_MSG),
        ("-1", SHAPE_MSG),
        ("1:a", SHAPE_MSG),
        ("x:2", SHAPE_MSG),
        ("1:2:3", SHAPE_MSG),
        ("1.5", SHAPE_MSG),
        ("0x1", SHAPE_MSG),
        ("1 : 2", SHAPE_MSG),
        ("3:1", "ends before it starts"),
    ],
)
def test_parse_range_refuses_other_shapes_naming_the_rule(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_range(text)
    assert str(err.value) == f"targetNodes {text!r} {message}"


def test_range_last_covers_and_span_resolve_open_ends_against_num_nodes() -> None:
    closed, open_ = Range(2, 3, "2:3"), Range(2, None, "2:")
    assert [closed.covers(i, 8) for i in range(5)] == [False, False, True, True, False]
    assert (closed.last(8), closed.span(8)) == (3, 2)
    assert (open_.last(8), open_.span(8), open_.covers(7, 8), open_.covers(8, 8)) == (
        7,
        6,
        True,
        False,
    )
    assert (open_.last(4), open_.span(4)) == (3, 2)


# --- check_node_properties (RegisterJobDefinition) --------------------------------------------


def test_a_valid_definition_has_no_errors() -> None:
    p = props(4, 0, rng("0", ["main"]), rng("1:"), mnp={"mpi": "openmpi"})
    assert check_node_properties(p) == []


@pytest.mark.parametrize(
    ("ranges", "uncovered"),
    [
        (["0:1", "4"], "2-3,5-7"),
        (["1:"], "0"),
        ([":6"], "7"),
        (["0", "2", "4", "6"], "1,3,5,7"),
        (["0:2", "5:6"], "3-4,7"),
    ],
)
def test_coverage_errors_name_the_uncovered_nodes(ranges: list[str], uncovered: str) -> None:
    p = props(8, 0, *(rng(t, ["x"]) for t in ranges))
    assert as_dict(check_node_properties(p)) == {
        "nodeProperties.nodeRangeProperties": (
            f"nodes {uncovered} are not covered by any targetNodes"
        )
    }


def test_more_than_five_ranges_are_refused() -> None:
    six = [rng(str(i), ["x"]) for i in range(MAX_RANGES + 1)]
    assert as_dict(check_node_properties(props(6, 0, *six))) == {
        "nodeProperties.nodeRangeProperties": "at most 5 ranges, got 6"
    }
    five = [rng(str(i), ["x"]) for i in range(4)] + [rng("4:5", ["x"])]
    assert check_node_properties(props(6, 0, *five)) == []
    # the edge model refuses a sixth range too, naming the same field
    errors = parse_errors(v.RegisterJobDefinition, node_def(**props(6, 0, *six)))
    assert "nodeProperties.nodeRangeProperties" in errors


@pytest.mark.parametrize("main", [4, 99])
def test_main_node_must_be_one_of_the_nodes(main: int) -> None:
    p = props(4, main, rng("0:", ["x"]))
    assert as_dict(check_node_properties(p)) == {
        "nodeProperties.mainNode": "must be between 0 and numNodes-1 (3)"
    }


def test_negative_main_node_is_refused_at_the_edge() -> None:
    errors = parse_errors(v.RegisterJobDefinition, node_def(**props(4, -1, rng("0:", ["x"]))))
    assert set(errors) == {"nodeProperties.mainNode"}


@pytest.mark.parametrize("num", [0, 1001])
def test_num_nodes_is_between_1_and_1000(num: int) -> None:
    assert as_dict(check_node_properties(props(num, 0, rng("0:", ["x"])))) == {
        "nodeProperties.numNodes": "must be between 1 and 1000"
    }


@pytest.mark.parametrize(
    "ranges",
    [
        [rng("0:")],
        [rng("0:", [])],
        [rng("0"), rng("1:", ["child"])],
        # the narrower range decides the main node: it has no command
        [rng("0:3", ["wide"]), rng("0")],
    ],
)
def test_main_node_without_a_command_is_refused_at_submit(ranges: list[dict[str, Any]]) -> None:
    p = props(4, 0, *ranges)
    assert check_node_properties(p) == []  # a submission may still bring one
    _, errors = resolve_nodes(p, None)
    assert as_dict(errors) == {
        "nodeOverrides.nodePropertyOverrides": "the main node (0) needs a command (or an image)"
    }
    override = {"nodePropertyOverrides": [{"targetNodes": "0", "containerOverrides": {
        "command": ["now"]}}]}  # fmt: skip
    assert resolve_nodes(p, override)[1] == []
    assert resolve_nodes(p, None, has_script=True)[1] == []


def test_only_the_main_node_needs_a_command() -> None:
    # the wide range has none; the narrow range that decides the main node (2) has one
    p = props(4, 2, rng("0:3"), rng("2", ["main"]))
    assert check_node_properties(p) == []
    assert resolve_nodes(p, None)[1] == []


def test_a_range_past_the_last_node_is_refused() -> None:
    p = props(4, 0, rng("0:5", ["x"]), rng("6:", ["x"]))
    assert as_dict(check_node_properties(p)) == {
        "nodeProperties.nodeRangeProperties[0].targetNodes": (
            "'0:5' reaches past the last node (3)"
        ),
        "nodeProperties.nodeRangeProperties[1].targetNodes": (
            "'6:' reaches past the last node (3)"
        ),
    }


def test_a_malformed_range_is_reported_with_its_index() -> None:
    p = props(4, 0, rng("0:", ["x"]), rng("two", ["y"]))
    assert as_dict(check_node_properties(p)) == {
        "nodeProperties.nodeRangeProperties[1].targetNodes": f"targetNodes 'two' {SHAPE_MSG}"
    }


def test_unknown_mpi_flavour_is_refused() -> None:
    p = props(2, 0, rng("0:", ["x"]), mnp={"mpi": "lam"})
    assert as_dict(check_node_properties(p)) == {
        "nodeProperties.mnp.mpi": "must be one of none, auto, openmpi, mpich, intelmpi"
    }


def test_register_multinode_rules_at_the_edge() -> None:
    good = node_def(**props(2, 0, rng("0:", ["x"])))
    assert v.parse(v.RegisterJobDefinition, good).nodeProperties is not None
    both = {**good, "containerProperties": {"command": ["x"]}}
    assert parse_errors(v.RegisterJobDefinition, both) == {
        "containerProperties": "not for type multinode: put containers in node ranges"
    }
    missing = {"jobDefinitionName": "mnp", "type": "multinode"}
    assert parse_errors(v.RegisterJobDefinition, missing) == {
        "nodeProperties": "required when type is multinode"
    }
    reserved = node_def(
        **props(2, 0, rng("0:", ["x"], environment=[{"name": "AWS_BATCH_X", "value": "1"}]))
    )
    assert parse_errors(v.RegisterJobDefinition, reserved) == {
        "nodeProperties.nodeRangeProperties[0].container.environment[0].name": (
            "names starting with AWS_BATCH are reserved"
        )
    }


# --- narrower range wins ----------------------------------------------------------------------


def test_narrower_range_wins_over_a_wider_one() -> None:
    p = props(
        10,
        0,
        rng("0:9", ["wide"], environment=[{"name": "WHICH", "value": "wide"}]),
        rng("4:5", ["narrow"], environment=[{"name": "WHICH", "value": "narrow"}]),
    )
    spec, commands = resolved(p)
    assert commands == [["wide"]] * 4 + [["narrow"]] * 2 + [["wide"]] * 4
    assert [c.environment["WHICH"] for c in spec.containers][3:7] == [
        "wide",
        "narrow",
        "narrow",
        "wide",
    ]


def test_narrower_range_wins_whatever_the_order() -> None:
    p = props(10, 0, rng("4:5", ["narrow"]), rng("0:9", ["wide"]))
    _, commands = resolved(p)
    assert commands == [["wide"]] * 4 + [["narrow"]] * 2 + [["wide"]] * 4


def test_open_range_spans_to_the_last_node_and_later_wins_ties() -> None:
    p = props(6, 0, rng(":", ["all"]), rng("3:", ["tail"]), rng("1:2", ["a"]), rng("1:2", ["b"]))
    _, commands = resolved(p)
    assert commands == [["all"], ["b"], ["b"], ["tail"], ["tail"], ["tail"]]


def test_each_node_gets_its_own_container_copy() -> None:
    p = props(3, 0, rng("0:", ["x"], environment=[{"name": "A", "value": "1"}]))
    spec, _ = resolved(p)
    spec.containers[1].environment["A"] = "changed"
    spec.containers[1].command.append("more")
    assert spec.containers[0].environment == {"A": "1"}
    assert spec.containers[2].command == ["x"]


def test_resolved_spec_carries_mnp_settings_and_the_ranges() -> None:
    ranges = [rng("0", ["main"]), rng("1:")]
    p = props(3, 0, *ranges, mnp={"mpi": "mpich", "tasksPerNode": 2, "readyTimeoutSeconds": 7.5})
    spec, commands = resolved(p)
    assert (spec.num_nodes, spec.main_node, spec.mpi) == (3, 0, "mpich")
    assert (spec.tasks_per_node, spec.ready_timeout_seconds) == (2, 7.5)
    assert commands == [["main"], [], []]
    assert spec.to_wire() == {"numNodes": 3, "mainNode": 0, "nodeRangeProperties": ranges}
    assert NodeSpec.from_doc(spec.to_doc()).to_doc() == spec.to_doc()


# --- nodeOverrides.numNodes -------------------------------------------------------------------


def test_num_nodes_override_needs_an_open_ended_range() -> None:
    p = props(4, 0, rng("0", ["main"]), rng("1:3"))
    spec, errors = resolve_nodes(p, {"numNodes": 6})
    assert spec is None
    assert as_dict(errors) == {
        "nodeOverrides.numNodes": "needs a job definition range that is open-ended (like 2:)"
    }


@pytest.mark.parametrize(
    ("p", "wanted"),
    [
        # the main node (2) would not exist with 2 nodes
        (props(4, 2, rng("0:1"), rng("2:", ["main"])), 2),
        (props(4, 3, rng(":2"), rng("3:", ["main"])), 3),
        # the open range's lower bound (2) must be below numNodes
        (props(4, 0, rng("0:1", ["main"]), rng("2:")), 2),
        (props(4, 0, rng("0", ["main"]), rng("3:")), 1),
    ],
)
def test_num_nodes_override_keeps_the_main_node_and_the_open_range(
    p: dict[str, Any], wanted: int
) -> None:
    spec, errors = resolve_nodes(p, {"numNodes": wanted})
    assert spec is None
    assert as_dict(errors) == {
        "nodeOverrides.numNodes": f"{wanted} leaves the main node or an open range without nodes"
    }


@pytest.mark.parametrize("wanted", [0, 1001])
def test_num_nodes_override_is_between_1_and_1000(wanted: int) -> None:
    spec, errors = resolve_nodes(props(2, 0, rng("0:", ["x"])), {"numNodes": wanted})
    assert spec is None
    assert as_dict(errors) == {"nodeOverrides.numNodes": "must be between 1 and 1000"}


@pytest.mark.parametrize("wanted", [2, 3, 7])
def test_num_nodes_override_grows_or_shrinks_the_open_range(wanted: int) -> None:
    p = props(4, 0, rng("0", ["main"]), rng("1:", ["child"]))
    spec, commands = resolved(p, {"numNodes": wanted})
    assert spec.num_nodes == wanted
    assert commands == [["main"]] + [["child"]] * (wanted - 1)


def test_num_nodes_override_with_a_main_node_in_the_open_range() -> None:
    p = props(2, 1, rng("0", ["zero"]), rng("1:", ["rest"]))
    spec, commands = resolved(p, {"numNodes": 5})
    assert (spec.num_nodes, spec.main_node) == (5, 1)
    assert commands == [["zero"]] + [["rest"]] * 4


# --- nodePropertyOverrides --------------------------------------------------------------------


def test_node_property_overrides_apply_to_their_nodes_only() -> None:
    p = props(
        4,
        0,
        rng(
            "0:",
            ["base"],
            environment=[{"name": "KEEP", "value": "k"}, {"name": "SWAP", "value": "old"}],
            resourceRequirements=[
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "256"},
            ],
        ),
    )
    overrides = {
        "nodePropertyOverrides": [
            {
                "targetNodes": "1:2",
                "containerOverrides": {
                    "command": ["over", "ride"],
                    "environment": [
                        {"name": "SWAP", "value": "new"},
                        {"name": "ADDED", "value": "a"},
                    ],
                    "resourceRequirements": [
                        {"type": "VCPU", "value": "2"},
                        {"type": "GPU", "value": "1"},
                    ],
                },
            }
        ]
    }
    spec, commands = resolved(p, overrides)
    assert commands == [["base"], ["over", "ride"], ["over", "ride"], ["base"]]
    envs = [c.environment for c in spec.containers]
    assert envs[0] == envs[3] == {"KEEP": "k", "SWAP": "old"}
    assert envs[1] == envs[2] == {"KEEP": "k", "SWAP": "new", "ADDED": "a"}
    res = [c.resources for c in spec.containers]
    assert res[0] == res[3] == Resources(1, 256, 0)
    assert res[1] == res[2] == Resources(2, 256, 1), "memory kept from the definition"


def test_node_property_overrides_follow_the_overridden_num_nodes() -> None:
    p = props(2, 0, rng("0", ["main"]), rng("1:", ["child"]))
    overrides = {
        "numNodes": 5,
        "nodePropertyOverrides": [
            {"targetNodes": "3:", "containerOverrides": {"command": ["tail"]}},
            {
                "targetNodes": "0",
                "containerOverrides": {"environment": [{"name": "M", "value": "1"}]},
            },
        ],
    }
    spec, commands = resolved(p, overrides)
    assert commands == [["main"], ["child"], ["child"], ["tail"], ["tail"]]
    assert [c.environment for c in spec.containers] == [{"M": "1"}, {}, {}, {}, {}]


def test_a_malformed_override_range_is_reported_with_its_index() -> None:
    p = props(2, 0, rng("0:", ["x"]))
    overrides = {
        "nodePropertyOverrides": [
            {"targetNodes": "0", "containerOverrides": {}},
            {"targetNodes": "2:1", "containerOverrides": {"command": ["y"]}},
        ]
    }
    _, errors = resolve_nodes(p, overrides)
    expected = {
        "nodeOverrides.nodePropertyOverrides[1].targetNodes": (
            "targetNodes '2:1' ends before it starts"
        )
    }
    assert as_dict(errors) == expected
    body = {
        "jobName": "j",
        "jobQueue": "q",
        "jobDefinition": "d",
        "nodeOverrides": overrides,
    }
    assert parse_errors(v.SubmitJob, body) == expected


def test_submit_edge_rules_for_node_overrides() -> None:
    base = {"jobName": "j", "jobQueue": "q", "jobDefinition": "d"}
    reserved = {
        **base,
        "nodeOverrides": {
            "nodePropertyOverrides": [
                {
                    "targetNodes": "0",
                    "containerOverrides": {"environment": [{"name": "aws_batch_x", "value": "1"}]},
                }
            ]
        },
    }
    assert parse_errors(v.SubmitJob, reserved) == {
        "nodeOverrides.nodePropertyOverrides[0].containerOverrides.environment[0].name": (
            "names starting with AWS_BATCH are reserved"
        )
    }
    array = {**base, "nodeOverrides": {"numNodes": 2}, "arrayProperties": {"size": 2}}
    assert parse_errors(v.SubmitJob, array) == {"nodeOverrides": "array jobs cannot be multi-node"}
    zero = {**base, "nodeOverrides": {"numNodes": 0}}
    assert set(parse_errors(v.SubmitJob, zero)) == {"nodeOverrides.numNodes"}


@pytest.mark.parametrize(("kind", "value"), [("VCPU", "abc"), ("MEMORY", "2"), ("GPU", "1.5")])
def test_node_override_resources_are_validated_like_container_overrides(
    kind: str, value: str
) -> None:
    body = {
        "jobName": "j",
        "jobQueue": "q",
        "jobDefinition": "d",
        "nodeOverrides": {
            "nodePropertyOverrides": [
                {
                    "targetNodes": "1:",
                    "containerOverrides": {
                        "resourceRequirements": [{"type": kind, "value": value}]
                    },
                }
            ]
        },
    }
    errors = parse_errors(v.SubmitJob, body)
    assert set(errors) == {
        "nodeOverrides.nodePropertyOverrides[0].containerOverrides.resourceRequirements[0].value"
    }


def test_node_override_command_must_not_contain_empty_strings() -> None:
    body = {
        "jobName": "j",
        "jobQueue": "q",
        "jobDefinition": "d",
        "nodeOverrides": {
            "nodePropertyOverrides": [
                {"targetNodes": "0", "containerOverrides": {"command": ["run", ""]}}
            ]
        },
    }
    assert parse_errors(v.SubmitJob, body) == {
        "nodeOverrides.nodePropertyOverrides[0].containerOverrides.command": (
            "must not contain empty strings"
        )
    }


def test_an_override_cannot_take_the_main_nodes_command_away() -> None:
    p = props(3, 0, rng("0", ["main"]), rng("1:"))
    spec, errors = resolve_nodes(
        p, {"nodePropertyOverrides": [{"targetNodes": "0", "containerOverrides": {"command": []}}]}
    )
    assert spec is None or errors, f"accepted: main command {spec.containers[0].command!r}"


# --- through the Service ----------------------------------------------------------------------


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    h.environment()
    h.queue()
    h.definition()  # a container definition named "def"
    yield h
    h.close()


def register_mnp(h: Head, *ranges: dict[str, Any], num: int = 3, main: int = 0) -> None:
    h.api["registerJobDefinition"](node_def(**props(num, main, *ranges)))


def test_hostile_commands_and_environment_values_pass_through_unchanged(head: Head) -> None:
    register_mnp(
        head,
        rng("0", ["main", HOSTILE, "Ref::p"], environment=[{"name": "H", "value": HOSTILE}]),
        rng("1:", [HOSTILE], environment=[{"name": "H2", "value": HOSTILE}]),
    )
    job_id = head.submit(
        jobDefinition="mnp",
        parameters={"p": HOSTILE},
        nodeOverrides={
            "nodePropertyOverrides": [
                {
                    "targetNodes": "2",
                    "containerOverrides": {
                        "command": ["two", HOSTILE],
                        "environment": [{"name": "H3", "value": HOSTILE}],
                    },
                }
            ]
        },
    )
    nodes = head.state.active[job_id].spec.nodes
    assert nodes is not None
    assert [c.command for c in nodes.containers] == [
        ["main", HOSTILE, HOSTILE],
        [HOSTILE],
        ["two", HOSTILE],
    ]
    assert [c.environment for c in nodes.containers] == [
        {"H": HOSTILE},
        {"H2": HOSTILE},
        {"H2": HOSTILE, "H3": HOSTILE},
    ]
    detail = head.describe(job_id)
    assert detail["container"]["command"] == ["main", HOSTILE, HOSTILE]
    echoed = detail["nodeProperties"]["nodeRangeProperties"][1]["container"]
    assert echoed["command"] == [HOSTILE]
    assert echoed["environment"] == [{"name": "H2", "value": HOSTILE}]


def test_submit_applies_node_overrides_and_reports_broken_rules(head: Head) -> None:
    register_mnp(head, rng("0", ["main"]), rng("1:", ["child"]))
    job_id = head.submit(jobDefinition="mnp", nodeOverrides={"numNodes": 5})
    detail = head.describe(job_id)
    assert detail["nodeProperties"]["numNodes"] == 5
    assert detail["nodeProperties"]["mainNode"] == 0
    with pytest.raises(InvalidInput) as err:
        head.submit(jobDefinition="mnp", nodeOverrides={"numNodes": 1})
    assert as_dict(err.value.errors) == {
        "nodeOverrides.numNodes": "1 leaves the main node or an open range without nodes"
    }


def test_submit_refuses_mismatched_override_kinds(head: Head) -> None:
    register_mnp(head, rng("0:", ["x"]))
    with pytest.raises(InvalidInput) as err:
        head.submit(jobDefinition="mnp", containerOverrides={"command": ["y"]})
    assert as_dict(err.value.errors) == {
        "containerOverrides": "use nodeOverrides for a multinode job definition"
    }
    with pytest.raises(InvalidInput) as err:
        head.submit(jobDefinition="def", nodeOverrides={"numNodes": 2})
    assert as_dict(err.value.errors) == {"nodeOverrides": "def is not a multinode job definition"}
