"""``computeResources`` for EC2/SPOT: a valid block passes; each bad field is named."""

from __future__ import annotations

from typing import Any

import pytest

from mnp.ec2.catalog import Catalogue
from mnp.ec2.compute import check_against_catalogue, check_compute_resources

ROLE = "arn:aws:iam::123456789012:role/aws-ec2-spot-fleet-tagging-role"


def ec2(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "EC2",
        "minvCpus": 0,
        "maxvCpus": 256,
        "desiredvCpus": 0,
        "instanceTypes": ["c5", "m5.large", "optimal"],
        "subnets": ["subnet-0a1b2c3d"],
        "securityGroupIds": ["sg-0123abcd"],
        "instanceRole": "ecsInstanceRole",
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


def spot(**extra: Any) -> dict[str, Any]:
    return ec2(type="SPOT", **extra)


def problems(cr: Any, update: bool = False) -> list[tuple[str, str]]:
    return [(e.path, e.message) for e in check_compute_resources(cr, update=update)]


@pytest.mark.parametrize(
    "cr",
    [
        ec2(),
        ec2(allocationStrategy="BEST_FIT_PROGRESSIVE", placementGroup="mnp cluster"),
        spot(allocationStrategy="SPOT_PRICE_CAPACITY_OPTIMIZED", bidPercentage=60),
        spot(spotIamFleetRole=ROLE, bidPercentage=0),
        spot(spotIamFleetRole=ROLE, allocationStrategy="BEST_FIT", bidPercentage=100),
        ec2(
            instanceRole="arn:aws:iam::123456789012:instance-profile/ecsInstanceRole",
            imageId="ami-0abcdef1234567890",
            ec2KeyPair="my key",
            tags={"Name": "Batch Instance - C4OnDemand", "team": ""},
            ec2Configuration=[
                {"imageType": "ECS_AL2023"},
                {"imageType": "ECS_AL2023_NVIDIA", "imageIdOverride": "ami-0123456789abcdef0"},
            ],
            launchTemplate={"launchTemplateName": "mnp-nodes", "version": "$Latest"},
            scalingPolicy={"minScaleDownDelayMinutes": 20},
        ),
        ec2(securityGroupIds=None, launchTemplate={"launchTemplateId": "lt-0abc", "version": "3"}),
    ],
)
def test_valid(cr: dict[str, Any]) -> None:
    assert problems(cr) == []


P = "computeResources"
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # id, block, field named, (part of) the rule
    ("no type", ec2(type=None), f"{P}.type", "required"),
    ("type not a compute type", ec2(type="MANAGED"), f"{P}.type", "must be one of EC2, SPOT"),
    ("FARGATE refused", ec2(type="FARGATE"), f"{P}.type", "FARGATE is not supported"),
    ("FARGATE_SPOT refused", ec2(type="FARGATE_SPOT"), f"{P}.type", "FARGATE_SPOT is not"),
    ("no maxvCpus", ec2(maxvCpus=None), f"{P}.maxvCpus", "required"),
    ("maxvCpus not an integer", ec2(maxvCpus="8"), f"{P}.maxvCpus", "must be an integer"),
    ("maxvCpus a bool", ec2(maxvCpus=True), f"{P}.maxvCpus", "must be an integer"),
    ("minvCpus negative", ec2(minvCpus=-1), f"{P}.minvCpus", "must be between 0 and"),
    (
        "minvCpus over max",
        ec2(minvCpus=8, maxvCpus=4, desiredvCpus=None),
        f"{P}.minvCpus",
        "must be <= maxvCpus (4)",
    ),
    (
        "desired under min",
        ec2(minvCpus=8, desiredvCpus=4),
        f"{P}.desiredvCpus",
        "between minvCpus (8)",
    ),
    ("desired over max", ec2(desiredvCpus=512), f"{P}.desiredvCpus", "and maxvCpus (256), got 512"),
    (
        "no instanceTypes",
        ec2(instanceTypes=None),
        f"{P}.instanceTypes",
        "required for EC2 and SPOT",
    ),
    (
        "empty instanceTypes",
        ec2(instanceTypes=[]),
        f"{P}.instanceTypes",
        "required for EC2 and SPOT",
    ),
    (
        "instanceTypes not strings",
        ec2(instanceTypes=[5]),
        f"{P}.instanceTypes[0]",
        "must be a string",
    ),
    (
        "unknown strategy",
        ec2(allocationStrategy="CHEAPEST"),
        f"{P}.allocationStrategy",
        "must be one of BEST_FIT,",
    ),
    (
        "SPOT_* on EC2",
        ec2(allocationStrategy="SPOT_CAPACITY_OPTIMIZED"),
        f"{P}.allocationStrategy",
        "only available for Spot Instance",
    ),
    ("bid on EC2", ec2(bidPercentage=50), f"{P}.bidPercentage", "applies only to SPOT"),
    (
        "bid over 100",
        spot(allocationStrategy="SPOT_CAPACITY_OPTIMIZED", bidPercentage=101),
        f"{P}.bidPercentage",
        "between 0 and 100",
    ),
    (
        "bid not integer",
        spot(allocationStrategy="SPOT_CAPACITY_OPTIMIZED", bidPercentage=50.5),
        f"{P}.bidPercentage",
        "must be an integer",
    ),
    ("no subnets", ec2(subnets=None), f"{P}.subnets", "required"),
    ("bad subnet id", ec2(subnets=["subnet-1", "vpc-1"]), f"{P}.subnets[1]", "must match subnet-"),
    (
        "no security groups, no template",
        ec2(securityGroupIds=None),
        f"{P}.securityGroupIds",
        "one or more security groups",
    ),
    (
        "bad security group",
        ec2(securityGroupIds=["default"]),
        f"{P}.securityGroupIds[0]",
        "must match sg-",
    ),
    ("bad imageId", ec2(imageId="ubuntu"), f"{P}.imageId", "must match ami-"),
    (
        "no instanceRole",
        ec2(instanceRole=None),
        f"{P}.instanceRole",
        "required for Amazon EC2 instance types",
    ),
    (
        "bad instanceRole",
        ec2(instanceRole="arn:aws:iam::1:role/x"),
        f"{P}.instanceRole",
        "must match",
    ),
    (
        "SPOT BEST_FIT without fleet role",
        spot(),
        f"{P}.spotIamFleetRole",
        "required for SPOT when allocationStrategy is BEST_FIT",
    ),
    (
        "fleet role not an ARN",
        spot(spotIamFleetRole="fleet"),
        f"{P}.spotIamFleetRole",
        "must match arn:",
    ),
    ("tags not a map", ec2(tags=["a"]), f"{P}.tags", "must be an object"),
    ("tag value not a string", ec2(tags={"n": 1}), f"{P}.tags['n']", "must be a string"),
    (
        "tag key reserved",
        ec2(tags={"aws:x": "y"}),
        f"{P}.tags['aws:x']",
        "must not start with aws:",
    ),
    ("too many tags", ec2(tags={f"k{i}": "v" for i in range(51)}), f"{P}.tags", "at most 50 tags"),
    (
        "placementGroup empty",
        ec2(placementGroup=""),
        f"{P}.placementGroup",
        "must be 1-255 characters",
    ),
    ("ec2KeyPair not a string", ec2(ec2KeyPair=7), f"{P}.ec2KeyPair", "must be a string"),
    (
        "three ec2Configuration",
        ec2(ec2Configuration=[{"imageType": "ECS_AL2"}] * 3),
        f"{P}.ec2Configuration",
        "one or two values",
    ),
    (
        "ec2Configuration without imageType",
        ec2(ec2Configuration=[{}]),
        f"{P}.ec2Configuration[0].imageType",
        "required",
    ),
    (
        "ec2Configuration EKS type",
        ec2(ec2Configuration=[{"imageType": "EKS_AL2023"}]),
        f"{P}.ec2Configuration[0].imageType",
        "must be one of ECS_AL2",
    ),
    (
        "ec2Configuration twice",
        ec2(ec2Configuration=[{"imageType": "ECS_AL2"}] * 2),
        f"{P}.ec2Configuration[1].imageType",
        "given twice",
    ),
    (
        "ec2Configuration bad override",
        ec2(ec2Configuration=[{"imageType": "ECS_AL2", "imageIdOverride": "x"}]),
        f"{P}.ec2Configuration[0].imageIdOverride",
        "must match ami-",
    ),
    (
        "ec2Configuration read-only field",
        ec2(ec2Configuration=[{"imageType": "ECS_AL2", "batchImageStatus": "LATEST"}]),
        f"{P}.ec2Configuration[0].batchImageStatus",
        "unknown field",
    ),
    (
        "template id and name",
        ec2(launchTemplate={"launchTemplateId": "lt-1", "launchTemplateName": "abc"}),
        f"{P}.launchTemplate.launchTemplateId",
        "not both",
    ),
    (
        "template neither",
        ec2(launchTemplate={"version": "1"}),
        f"{P}.launchTemplate.launchTemplateId",
        "required: launchTemplateId or launchTemplateName",
    ),
    (
        "template version",
        ec2(launchTemplate={"launchTemplateId": "lt-1", "version": "latest"}),
        f"{P}.launchTemplate.version",
        "must match",
    ),
    (
        "template not an object",
        ec2(launchTemplate="lt-1"),
        f"{P}.launchTemplate",
        "must be an object",
    ),
    (
        "template userdataType",
        ec2(launchTemplate={"launchTemplateId": "lt-1", "userdataType": "EKS_NODEADM"}),
        f"{P}.launchTemplate.userdataType",
        "only to EKS",
    ),
    (
        "eleven overrides",
        ec2(
            launchTemplate={
                "launchTemplateId": "lt-1",
                "overrides": [{"launchTemplateId": "lt-2", "targetInstanceTypes": ["c5"]}] * 11,
            }
        ),
        f"{P}.launchTemplate.overrides",
        "at most 10 items",
    ),
    (
        "override without targets",
        ec2(
            launchTemplate={"launchTemplateId": "lt-1", "overrides": [{"launchTemplateId": "lt-2"}]}
        ),
        f"{P}.launchTemplate.overrides[0].targetInstanceTypes",
        "required",
    ),
    (
        "updateToLatestImageVersion on create",
        ec2(updateToLatestImageVersion=True),
        f"{P}.updateToLatestImageVersion",
        "only in UpdateComputeEnvironment",
    ),
    (
        "scale-down delay under 20",
        ec2(scalingPolicy={"minScaleDownDelayMinutes": 5}),
        f"{P}.scalingPolicy.minScaleDownDelayMinutes",
        "20-10080, or 0",
    ),
    ("unknown field", ec2(maxVcpus=4), f"{P}.maxVcpus", "unknown field"),
]


@pytest.mark.parametrize(
    ("cr", "path", "rule"), [pytest.param(c, p, r, id=i) for i, c, p, r in CASES]
)
def test_each_bad_field_named(cr: dict[str, Any], path: str, rule: str) -> None:
    got = problems(cr)
    assert any(p == path and rule in m for p, m in got), got
    assert all(p == path or p.startswith(path + "[") or path.startswith(p) for p, _ in got), got


def test_not_an_object() -> None:
    assert problems(["EC2"]) == [("computeResources", "must be an object")]


def test_every_problem_at_once() -> None:
    got = {p for p, _ in problems(ec2(type="SPOT", maxvCpus=-1, subnets=None, bidPercentage=200))}
    assert got == {f"{P}.{k}" for k in ("maxvCpus", "subnets", "bidPercentage", "spotIamFleetRole")}


@pytest.mark.parametrize(
    ("cr", "expected"),
    [
        ({"maxvCpus": 8}, []),
        ({"updateToLatestImageVersion": True, "instanceTypes": ["c5"]}, []),
        (
            {"updateToLatestImageVersion": "yes"},
            [(f"{P}.updateToLatestImageVersion", "must be true or false")],
        ),
        (
            {"allocationStrategy": "BEST_FIT"},
            [
                (
                    f"{P}.allocationStrategy",
                    "BEST_FIT isn't supported when updating a compute environment",
                )
            ],
        ),
        (
            {"spotIamFleetRole": ROLE},
            [(f"{P}.spotIamFleetRole", "cannot be changed by UpdateComputeEnvironment")],
        ),
    ],
)
def test_update(cr: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert problems(cr, update=True) == expected


def test_catalogue_check_is_separate() -> None:
    cat = Catalogue.from_rows(
        [
            {"name": "c5.large", "vcpus": 2, "memoryMiB": 4096},
            {"name": "m6g.large", "vcpus": 2, "memoryMiB": 8192, "architecture": "arm64"},
        ]
    )
    cr = ec2(
        instanceTypes=["c5", "p3"],
        launchTemplate={
            "launchTemplateId": "lt-1",
            "overrides": [{"launchTemplateId": "lt-2", "targetInstanceTypes": ["c5", "m6g"]}],
        },
    )
    assert problems(cr) == []
    got = [(e.path, e.message) for e in check_against_catalogue(cr, cat)]
    assert got == [
        (
            f"{P}.instanceTypes",
            "Instance type can only be one of [c5, c5.large, default_arm64, default_x86_64, "
            "m6g, m6g.large, optimal]",
        ),
        (
            f"{P}.launchTemplate.overrides[0].targetInstanceTypes",
            "instance types must share one architecture: arm64 (m6g.large), x86_64 (c5.large)",
        ),
    ]
