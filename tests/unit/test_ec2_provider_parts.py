"""The EC2 provider's pure parts: tags and parameters of a node's RunInstances, error
classification, the Spot cap, the idempotency token and the cluster id."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from mnp.ec2.prices import PriceTable
from mnp.ec2.userdata import NodeBoot, user_data
from mnp.errors import InvalidInput
from mnp.providers import _REGISTRY, Instance, LaunchOutcome, LaunchRequest
from mnp.providers.ec2 import (
    MNP_REFUSED,
    aws_error,
    client_token,
    cluster_id,
    instance_of,
    launch_params,
    retryable,
    spot_max_price,
    subnet_for,
)
from mnp.spec.environments import Node, NodeStatus
from mnp.spec.resources import Resources

PRICES = PriceTable("test", "us-east-1", "2026-01-01", MappingProxyType({"c5.large": 0.085}))
CR: dict[str, Any] = {
    "type": "EC2",
    "imageId": "ami-12345678",
    "subnets": ["subnet-a", "subnet-b", "subnet-c"],
    "securityGroupIds": ["sg-1"],
    "instanceRole": "arn:aws:iam::123456789012:instance-profile/nodes",
    "tags": {"team": "hpc", "mnp:node": "not-this"},
}


def request(node_id: str = "ce-1", cr: dict[str, Any] = CR, **kw: Any) -> LaunchRequest:
    node = Node(node_id, "ce", "0.0.0.0", Resources(2, 4096), NodeStatus.LAUNCHING)
    boot = NodeBoot(
        head="http://10.0.0.5:8750", node_id=node_id, compute_environment="ce",
        join_token="j" * 43, vcpus=2, memory_mib=4096, gpus=0, version="0.1.0",
        bundle_sha256="0" * 64,
    )  # fmt: skip
    args: dict[str, Any] = {"instance_type": "c5.large", "compute_resources": cr, "boot": boot}
    return LaunchRequest(node_id, node, **{**args, **kw})


def test_other_providers_see_no_change() -> None:
    r = LaunchRequest("n1", Node("n1", "ce", "127.0.0.2", Resources(), NodeStatus.LAUNCHING))
    assert (r.instance_type, dict(r.compute_resources), r.boot, r.gang) == (None, {}, None, None)
    assert LaunchOutcome("n1", pid=3) == LaunchOutcome("n1", 3, None, False, None)
    assert Instance("n1", 3) == Instance("n1", 3, None, None, None)
    assert _REGISTRY["ec2"] == "mnp.providers.ec2:Ec2Provider"


def test_a_node_is_one_tagged_instance_with_its_own_token() -> None:
    params = launch_params(request(), "mnp-c1", None, PRICES)
    assert (params["MinCount"], params["MaxCount"], params["InstanceType"]) == (1, 1, "c5.large")
    assert params["TagSpecifications"] == [
        {"ResourceType": "instance", "Tags": [
            {"Key": "team", "Value": "hpc"}, {"Key": "mnp:node", "Value": "ce-1"},
            {"Key": "mnp:cluster", "Value": "mnp-c1"}, {"Key": "mnp:ce", "Value": "ce"},
        ]},
    ]  # fmt: skip
    assert params["ClientToken"] == "mnp-c1-ce-1"
    assert params["IamInstanceProfile"] == {"Arn": CR["instanceRole"]}
    assert params["UserData"] == user_data(request().boot)  # type: ignore[arg-type]
    assert "InstanceMarketOptions" not in params and "Placement" not in params


def test_spot_nodes_are_capped_at_the_bid() -> None:
    spot = {**CR, "type": "SPOT", "bidPercentage": 50}
    params = launch_params(request(cr=spot), "mnp-c1", None, PRICES)
    assert params["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.0425"
    assert params["InstanceMarketOptions"]["MarketType"] == "spot"


@pytest.mark.parametrize(
    ("cr", "instance_type", "expected"),
    [
        ({"type": "SPOT", "bidPercentage": 50}, "c5.large", "0.0425"),
        ({"type": "SPOT", "bidPercentage": 100}, "c5.large", "0.085"),
        ({"type": "SPOT", "bidPercentage": 33}, "c5.large", "0.02805"),
        ({"type": "SPOT", "bidPercentage": 1}, "odd.type", "0.001234"),  # rounded down
        ({"type": "SPOT"}, "c5.large", None),  # AWS Batch: 100 % of On-Demand, EC2's default
        ({"type": "SPOT", "bidPercentage": 50}, "c6i.large", None),  # no price: EC2's default
        ({"type": "EC2", "bidPercentage": 50}, "c5.large", None),
    ],
)
def test_spot_max_price(cr: dict[str, Any], instance_type: str, expected: str | None) -> None:
    table = MappingProxyType({**PRICES.prices, "odd.type": 0.1234567})
    prices = PriceTable("t", "r", "2026-01-01", table)
    assert spot_max_price(cr, instance_type, prices) == expected


def test_what_mnp_refuses_before_asking_ec2() -> None:
    for bad, field in [
        (request(instance_type=None), "instanceType"),
        (request(boot=None), "boot"),
        (request(boot=request("ce-2").boot), "boot"),  # another node's join token
        (request(cr={**CR, "imageId": None}), "computeResources"),
    ]:
        with pytest.raises(InvalidInput) as e:
            launch_params(bad, "mnp-c1", None, PRICES)
        assert str(e.value).startswith(field), str(e.value)
        described = aws_error(e.value)
        assert described is not None
        assert described[0].startswith(f"{MNP_REFUSED}: {field}") and not described[1]


def test_template_data_is_merged() -> None:
    script = "#!/bin/bash\necho lt\n"
    data = {"UserData": base64.b64encode(script.encode()).decode(), "KeyName": "lt-key"}
    params = launch_params(request(), "mnp-c1", data, PRICES)
    assert params["KeyName"] == "lt-key"
    assert params["UserData"] == user_data(request().boot, script)  # type: ignore[arg-type]


def test_subnets() -> None:
    picks = {subnet_for(CR, f"ce-{i}") for i in range(30)}
    assert picks == set(CR["subnets"])  # spread
    assert subnet_for(CR, "ce-7") == subnet_for(CR, "ce-7")  # stable: a retry goes alike
    assert subnet_for({**CR, "placementGroup": "pg"}, "ce-7") == "subnet-a"  # one AZ
    assert subnet_for({}, "ce-7") is None
    gang = [request(f"ce-{i}", gang="job-1") for i in range(8)]
    assert len({launch_params(r, "c", None, PRICES)["SubnetId"] for r in gang}) == 1


def test_client_token() -> None:
    assert client_token("mnp-0123456789abcdef", "ce-12") == "mnp-0123456789abcdef-ce-12"
    long = client_token("mnp-0123456789abcdef", "n" * 60)
    assert len(long) == 64 and long == client_token("mnp-0123456789abcdef", "n" * 60)
    assert long != client_token("mnp-fedcba9876543210", "n" * 60)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("InsufficientInstanceCapacity", 500, True),
        ("InstanceLimitExceeded", 400, True),
        ("VcpuLimitExceeded", 400, True),
        ("RequestLimitExceeded", 503, True),
        ("Throttling", 400, True),
        ("SpotMaxPriceTooLow", 400, True),
        ("SomethingNew", 503, True),  # AWS's side: another try may work
        ("UnauthorizedOperation", 403, False),
        ("AuthFailure", 401, False),
        ("InvalidParameterValue", 400, False),
        ("InvalidSubnetID.NotFound", 400, False),
        ("SomethingNew", 400, False),
    ],
)
def test_retryable(code: str, status: int, expected: bool) -> None:
    assert retryable(code, status) is expected


def test_aws_errors_keep_their_code() -> None:
    exceptions = pytest.importorskip("botocore.exceptions")
    denied = exceptions.ClientError(
        {"Error": {"Code": "UnauthorizedOperation", "Message": "You are not authorized"},
         "ResponseMetadata": {"HTTPStatusCode": 403}},
        "RunInstances",
    )  # fmt: skip
    assert aws_error(denied) == ("UnauthorizedOperation: You are not authorized", False)
    full = exceptions.ClientError(
        {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "no c5n.18xlarge"}},
        "RunInstances",
    )
    assert aws_error(full) == ("InsufficientInstanceCapacity: no c5n.18xlarge", True)
    offline = aws_error(exceptions.EndpointConnectionError(endpoint_url="http://x"))
    assert offline is not None and offline[0].startswith("EndpointConnectionError: ")
    assert offline[1]
    assert aws_error(exceptions.NoCredentialsError()) == (
        "NoCredentialsError: Unable to locate credentials", False,
    )  # fmt: skip
    assert aws_error(KeyError("bug")) is None  # not an AWS failure: not swallowed


def test_instance_of() -> None:
    item = {
        "InstanceId": "i-1", "InstanceType": "c5.large", "PrivateIpAddress": "10.0.0.9",
        "Tags": [{"Key": "mnp:node", "Value": "ce-1"}, {"Key": "mnp:cluster", "Value": "c"}],
    }  # fmt: skip
    assert instance_of(item) == Instance("ce-1", None, "i-1", "c5.large", "10.0.0.9")
    assert instance_of({"InstanceId": "i-2", "Tags": [{"Key": "Name", "Value": "x"}]}) is None


def test_cluster_id_is_made_once_per_home(tmp_path: Path) -> None:
    first = cluster_id(tmp_path / "home")
    assert first.startswith("mnp-") and len(first) == 20
    assert cluster_id(tmp_path / "home") == first
    mode = (tmp_path / "home" / "ec2-cluster-id").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert cluster_id(tmp_path / "other") != first  # random: the same path elsewhere differs
