"""A launch template merged with a compute environment's settings, as AWS Batch merges it."""

from __future__ import annotations

import base64
import email
from typing import Any

import pytest

from mnp.ec2 import template as t
from mnp.ec2.userdata import NodeBoot
from mnp.errors import InvalidInput

BOOT = NodeBoot(
    head="http://10.0.0.5:8750", node_id="ce-3", compute_environment="ce",
    join_token="j" * 43, vcpus=4, memory_mib=8192, gpus=0, version="0.1.0",
    bundle_sha256="0" * 64,
)  # fmt: skip
CR: dict[str, Any] = {
    "type": "EC2",
    "subnets": ["subnet-a", "subnet-b"],
    "securityGroupIds": ["sg-ce"],
    "instanceRole": "ecsInstanceRole",
    "tags": {"team": "ml", "Name": "ce-node"},
}
MIME = (
    'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n'
    'Content-Type: text/x-shellscript; charset="us-ascii"\n\n#!/bin/bash\necho lt\n\n--b--\n'
)
TEMPLATE: dict[str, Any] = {
    "ImageId": "ami-template",
    "InstanceType": "t3.micro",
    "KeyName": "lt-key",
    "IamInstanceProfile": {"Name": "lt-profile"},
    "SecurityGroupIds": ["sg-lt"],
    "InstanceMarketOptions": {"MarketType": "spot"},
    "DisableApiTermination": True,
    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100}}],
    "MetadataOptions": {"HttpTokens": "required", "State": "applied"},
    "Placement": {"AvailabilityZone": "us-east-1c", "Tenancy": "default"},
    "TagSpecifications": [
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "lt"},
                                              {"Key": "mnp:ce", "Value": "spoofed"},
                                              {"Key": "owner", "Value": "lt"}]},
        {"ResourceType": "volume", "Tags": [{"Key": "v", "Value": "1"}]},
    ],
    "UserData": base64.b64encode(MIME.encode()).decode(),
}  # fmt: skip


def params(
    cr: dict[str, Any] = CR, data: dict[str, Any] | None = TEMPLATE, **kw: Any
) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        compute_resources=cr, template_data=data, instance_type="c5n.18xlarge", count=1,
        cluster="lab", ce_name="ce", boot=BOOT,
    )  # fmt: skip
    args.update(kw)
    return t.run_instances_params(**args)


def instance_tags(p: dict[str, Any]) -> dict[str, str]:
    spec = next(s for s in p["TagSpecifications"] if s["ResourceType"] == "instance")
    return {tag["Key"]: tag["Value"] for tag in spec["Tags"]}


def test_batch_owned_fields_override() -> None:
    p = params(cr={**CR, "ec2KeyPair": "ce-key", "imageId": "ami-ce"})
    assert p["InstanceType"] == "c5n.18xlarge"
    assert (p["MinCount"], p["MaxCount"]) == (1, 1)
    assert p["ImageId"] == "ami-ce"
    assert p["KeyName"] == "ce-key"
    assert p["IamInstanceProfile"] == {"Name": "ecsInstanceRole"}
    assert p["SubnetId"] == "subnet-a"
    assert p["SecurityGroupIds"] == ["sg-ce"]
    assert "InstanceMarketOptions" not in p and "DisableApiTermination" not in p
    assert p["BlockDeviceMappings"] == TEMPLATE["BlockDeviceMappings"]
    assert p["MetadataOptions"] == {"HttpTokens": "required"}
    assert p["Placement"] == {"Tenancy": "default"}  # the subnet decides the AZ


def test_template_fills_what_the_environment_leaves_out() -> None:
    cr = {"type": "EC2", "subnets": ["subnet-a"]}
    p = params(cr=cr)
    assert p["ImageId"] == "ami-template"
    assert p["KeyName"] == "lt-key"
    assert p["SecurityGroupIds"] == ["sg-lt"]
    assert "IamInstanceProfile" not in p  # the template's instance role is ignored


def test_tags_merged_mnp_wins() -> None:
    p = params()
    assert instance_tags(p) == {
        "Name": "ce-node", "mnp:ce": "ce", "owner": "lt", "team": "ml",
        "mnp:cluster": "lab", "mnp:node": "ce-3",
    }  # fmt: skip
    assert {"ResourceType": "volume", "Tags": [{"Key": "v", "Value": "1"}]} in p[
        "TagSpecifications"
    ]


def test_environment_tags_cannot_spoof_mnp_tags() -> None:
    p = params(cr={**CR, "tags": {"mnp:node": "other", "mnp:cluster": "x", "owner": "ce"}})
    tags = instance_tags(p)
    assert (tags["mnp:node"], tags["mnp:cluster"], tags["owner"]) == ("ce-3", "lab", "ce")


def test_user_data_merged() -> None:
    p = params()
    parts = [m for m in email.message_from_string(p["UserData"]).walk() if not m.is_multipart()]
    assert parts[0].get_payload() == "#!/bin/bash\necho lt\n"
    assert "launcher.agent" in str(parts[1].get_payload())
    assert len(parts) == 2


@pytest.mark.parametrize(
    ("cr_extra", "data", "override", "instance_type", "image"),
    [
        ({"imageId": "ami-ce"}, TEMPLATE, True, "c5.large", "ami-template"),  # override LT first
        ({"imageId": "ami-ce"}, TEMPLATE, False, "c5.large", "ami-ce"),
        ({"ec2Configuration": [{"imageType": "ECS_AL2023", "imageIdOverride": "ami-cpu"},
                               {"imageType": "ECS_AL2_NVIDIA", "imageIdOverride": "ami-gpu"}]},
         TEMPLATE, False, "c5.large", "ami-cpu"),
        ({"ec2Configuration": [{"imageType": "ECS_AL2023", "imageIdOverride": "ami-cpu"},
                               {"imageType": "ECS_AL2_NVIDIA", "imageIdOverride": "ami-gpu"}]},
         TEMPLATE, False, "p4d.24xlarge", "ami-gpu"),
        ({"ec2Configuration": [{"imageType": "ECS_AL2023", "imageIdOverride": "ami-cpu"}]},
         TEMPLATE, False, "g5.xlarge", "ami-template"),
        ({"ec2Configuration": [{"imageType": "ECS_AL2023"}]}, TEMPLATE, False, "c5.large",
         "ami-template"),
    ],
)  # fmt: skip
def test_ami_order(
    cr_extra: dict[str, Any], data: dict[str, Any], override: bool, instance_type: str, image: str
) -> None:
    p = params(
        cr={**CR, **cr_extra}, data=data, from_override=override, instance_type=instance_type
    )
    assert p["ImageId"] == image


def test_no_ami_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match=r"no AMI for c5n\.18xlarge"):
        params(data=None)


def test_spot() -> None:
    p = params(cr={**CR, "type": "SPOT", "imageId": "ami-ce"}, max_price="0.40")
    assert p["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate",
            "MaxPrice": "0.40",
        },
    }  # fmt: skip


def test_placement_group_and_profile_arn() -> None:
    arn = "arn:aws:iam::123456789012:instance-profile/ecsInstanceRole"
    data = {**TEMPLATE, "Placement": {"GroupId": "pg-0123", "Tenancy": "default"}}
    p = params(cr={**CR, "placementGroup": "mnp-pg", "instanceRole": arn}, data=data)
    assert p["Placement"] == {"Tenancy": "default", "GroupName": "mnp-pg"}
    assert p["IamInstanceProfile"] == {"Arn": arn}


def test_network_interfaces_get_the_subnet_and_groups() -> None:
    data = {
        **TEMPLATE,
        "NetworkInterfaces": [
            {"DeviceIndex": 0, "SubnetId": "subnet-lt", "InterfaceType": "efa", "Groups": ["x"]},
            {"DeviceIndex": 1, "NetworkCardIndex": 1, "InterfaceType": "efa"},
        ],
    }
    p = params(data=data, subnet="subnet-b")
    assert "SubnetId" not in p and "SecurityGroupIds" not in p
    assert [(i["SubnetId"], i["Groups"], i["InterfaceType"]) for i in p["NetworkInterfaces"]] == [
        ("subnet-b", ["sg-ce"], "efa"),
        ("subnet-b", ["sg-ce"], "efa"),
    ]
    assert data["NetworkInterfaces"][0]["SubnetId"] == "subnet-lt"  # the input is not changed


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"count": 2}, "count: must be 1 with a node's boot data"),
        ({"count": 0}, "count: must be a positive integer"),
        ({"subnet": "subnet-z"}, "subnet-z is not one of computeResources.subnets"),
        ({"data": {**TEMPLATE, "UserData": "not base64!"}}, "launchTemplate userData: not base64"),
        ({"data": {**TEMPLATE, "UserData": base64.b64encode(b"echo hi").decode()}},
         "launchTemplate userData: must be a MIME multi-part"),
        ({"data": {**TEMPLATE, "MetadataOptions": {"HttpEndpoint": "disabled"}}},
         "MetadataOptions.HttpEndpoint: disabled"),
    ],
)  # fmt: skip
def test_refused(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        params(**kw)


def test_without_boot_many_instances_and_token() -> None:
    p = params(boot=None, count=3, client_token="req-1")
    assert (p["MinCount"], p["MaxCount"], p["ClientToken"]) == (3, 3, "req-1")
    assert "mnp:node" not in instance_tags(p)
    assert "launcher.agent" not in p["UserData"] and "echo lt" in p["UserData"]


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("p4d.24xlarge", ({"LaunchTemplateId": "lt-gpu", "Version": "$Default"}, True)),
        ("g5.xlarge", ({"LaunchTemplateId": "lt-gpu", "Version": "$Default"}, True)),
        ("c5n.18xlarge", ({"LaunchTemplateName": "base", "Version": "3"}, False)),
    ],
)
def test_template_spec_for(instance_type: str, expected: tuple[dict[str, str], bool]) -> None:
    lt = {
        "launchTemplateName": "base", "version": "3",
        "overrides": [{"launchTemplateId": "lt-gpu", "targetInstanceTypes": ["p4d", "g5.xlarge"]}],
    }  # fmt: skip
    assert t.template_spec_for(lt, instance_type) == expected
    assert t.template_spec_for(None, instance_type) == (None, False)
