"""The EC2 provider against a real moto server, through boto3 configured the way a user
configures it for AWS (region, endpoint and credentials from the environment only).

What moto (5.2) cannot do, and how these tests stand in for it:

- it has no CreatePlacementGroup (a 500 "not implemented") and records no
  ``Placement.GroupName`` on an instance: :class:`PlacementGroups` answers
  CreatePlacementGroup in memory, and the RunInstances parameters boto3 sends are recorded
  (:func:`record_run_instances`) to see the instances launched into the group;
- it never answers InsufficientInstanceCapacity: :class:`NoCapacityAfter` raises it from the
  client for the one gang test about it. Every other error here is moto's own.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.ec2.userdata import NodeBoot, user_data
from mnp.providers import LaunchRequest, make_provider
from mnp.providers.ec2 import Ec2Provider, client_token
from mnp.spec.environments import Node, NodeStatus
from mnp.spec.resources import Resources
from tests.integration.motoserver import DUMMY_CREDENTIALS, MotoServer

pytestmark = pytest.mark.integration
boto3 = pytest.importorskip("boto3")
ClientError = pytest.importorskip("botocore.exceptions").ClientError

PROFILE = "ecsInstanceRole"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        iam = boto3.client("iam", **server.client_args())
        iam.create_instance_profile(InstanceProfileName=PROFILE)
        yield server


@pytest.fixture
def aws_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's own settings only: what a user sets for real AWS, plus the endpoint."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", moto.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", moto.region)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_CREDENTIALS["aws_secret_access_key"])


@pytest.fixture
def ec2(moto: MotoServer) -> Any:
    """The test's own view of what moto holds."""
    return boto3.client("ec2", **moto.client_args())


@pytest.fixture
def compute_resources(ec2: Any) -> dict[str, Any]:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    subnet = ec2.describe_subnets()["Subnets"][0]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
    return {
        "type": "EC2",
        "instanceTypes": ["c5"],
        "imageId": image,
        "subnets": [subnet["SubnetId"]],
        "securityGroupIds": [group["GroupId"]],
        "instanceRole": PROFILE,
        "placementGroup": "pg-mpi",
        "tags": {"team": "hpc"},
    }


class PlacementGroups:
    """The EC2 client with CreatePlacementGroup answered here (moto lacks it), as EC2 does:
    ``InvalidPlacementGroup.Duplicate`` for a name that exists. Everything else is moto's."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.groups: dict[str, str] = {}
        self.creates: list[dict[str, Any]] = []

    def create_placement_group(self, **kwargs: Any) -> dict[str, Any]:
        self.creates.append(kwargs)
        name = kwargs["GroupName"]
        if name in self.groups:
            raise ClientError(
                {"Error": {"Code": "InvalidPlacementGroup.Duplicate",
                           "Message": f"The Placement Group '{name}' already exists."}},
                "CreatePlacementGroup",
            )  # fmt: skip
        self.groups[name] = kwargs["Strategy"]
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class NoCapacityAfter(PlacementGroups):
    """RunInstances fails with InsufficientInstanceCapacity after ``n`` successful calls."""

    def __init__(self, client: Any, n: int) -> None:
        super().__init__(client)
        self.left = n

    def run_instances(self, **kwargs: Any) -> dict[str, Any]:
        if self.left == 0:
            raise ClientError(
                {"Error": {"Code": "InsufficientInstanceCapacity",
                           "Message": f"We currently do not have sufficient "
                                      f"{kwargs['InstanceType']} capacity in the Availability "
                                      "Zone you requested (us-east-1a)."},
                 "ResponseMetadata": {"HTTPStatusCode": 500}},
                "RunInstances",
            )  # fmt: skip
        self.left -= 1
        return dict(self._client.run_instances(**kwargs))


def record_run_instances(client: Any) -> list[dict[str, Any]]:
    """Every RunInstances' parameters as boto3 sends them (appended as the calls are made)."""
    sent: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        sent.append(copy.deepcopy(params))

    client.meta.events.register("provide-client-params.ec2.RunInstances", keep)
    return sent


def provider(home: Path, moto: MotoServer) -> Ec2Provider:
    """Made as the head makes it (by registry name), its client wrapped for placement groups."""
    p = make_provider("ec2", "http://10.0.0.5:8750", home, None)
    assert isinstance(p, Ec2Provider)
    assert p.client.meta.endpoint_url == moto.url and p.client.meta.region_name == moto.region
    p.client = PlacementGroups(p.client)
    return p


def boot(node_id: str, ce: str) -> NodeBoot:
    return NodeBoot(
        head="http://10.0.0.5:8750", node_id=node_id, compute_environment=ce,
        join_token=f"join-{node_id}-" + "t" * 20, vcpus=2, memory_mib=4096, gpus=0,
        version="0.1.0", bundle_sha256="ab" * 32,
    )  # fmt: skip


def requests(
    ce: str, n: int, cr: dict[str, Any], gang: str | None = None, instance_type: str = "c5.large"
) -> list[LaunchRequest]:
    out = []
    for i in range(1, n + 1):
        node_id = f"{ce}-{i}"
        node = Node(node_id, ce, "0.0.0.0", Resources(2, 4096), NodeStatus.LAUNCHING)
        out.append(
            LaunchRequest(
                node_id,
                node,
                instance_type=instance_type,
                compute_resources=cr,
                boot=boot(node_id, ce),
                gang=gang,
            )
        )
    return out


def instances(ec2: Any, cluster: str) -> list[dict[str, Any]]:
    """Every instance of ``cluster`` that moto holds (terminated ones too)."""
    f = [{"Name": "tag:mnp:cluster", "Values": [cluster]}]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=f)
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def live(ec2: Any, cluster: str) -> list[dict[str, Any]]:
    return [i for i in instances(ec2, cluster) if i["State"]["Name"] in ("pending", "running")]


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def test_launch_is_tagged_typed_placed_and_idempotent(
    aws_env: None, moto: MotoServer, ec2: Any, compute_resources: dict[str, Any], tmp_path: Path
) -> None:
    p = provider(tmp_path, moto)
    sent = record_run_instances(p.client._client)
    batch = requests("mpi", 3, compute_resources)

    outcomes = p.launch(batch)

    assert [o.error for o in outcomes] == [None] * 3
    by_node = {o.request_id: o.instance_id for o in outcomes}
    up = {tags_of(i)["mnp:node"]: i for i in live(ec2, p.cluster)}
    assert sorted(up) == ["mpi-1", "mpi-2", "mpi-3"]
    for node_id, instance in up.items():
        assert instance["InstanceId"] == by_node[node_id]
        assert tags_of(instance) == {
            "mnp:cluster": p.cluster, "mnp:ce": "mpi", "mnp:node": node_id, "team": "hpc",
        }  # fmt: skip
        assert instance["InstanceType"] == "c5.large"
        assert instance["ImageId"] == compute_resources["imageId"]
        assert instance["SubnetId"] == compute_resources["subnets"][0]
        assert instance["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{PROFILE}")
        assert instance["ClientToken"] == client_token(p.cluster, node_id)
        attribute = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )
        text = base64.b64decode(attribute["UserData"]["Value"]).decode()
        assert text == user_data(boot(node_id, "mpi"))
        assert f"join-{node_id}-" in text
    # the placement group was made once, as a cluster group, and every instance went into it
    assert p.client.creates == [{"GroupName": "pg-mpi", "Strategy": "cluster"}]
    assert [s["Placement"] for s in sent] == [{"GroupName": "pg-mpi"}] * 3

    again = p.launch(batch)  # a retry after a lost answer

    assert {o.request_id: (o.error, o.instance_id) for o in again} == {
        n: (None, i) for n, i in by_node.items()
    }
    assert len(sent) == 3 and len(live(ec2, p.cluster)) == 3
    assert len(p.client.creates) == 1


def test_a_fresh_provider_lists_the_nodes_and_terminates_them(
    aws_env: None, moto: MotoServer, ec2: Any, compute_resources: dict[str, Any], tmp_path: Path
) -> None:
    first = provider(tmp_path, moto)
    outcomes = first.launch(requests("web", 3, compute_resources, instance_type="c5.xlarge"))
    assert all(o.ok for o in outcomes)
    other = provider(tmp_path / "other-home", moto)
    other.launch(requests("web", 1, compute_resources))  # another head: never in this list

    restarted = provider(tmp_path, moto)  # a restarted head: nothing but the home
    listed = restarted.list()

    assert restarted.cluster == first.cluster != other.cluster
    assert [(i.node_id, i.instance_type) for i in listed] == [
        ("web-1", "c5.xlarge"), ("web-2", "c5.xlarge"), ("web-3", "c5.xlarge"),
    ]  # fmt: skip
    assert {i.instance_id for i in listed} == {o.instance_id for o in outcomes}
    assert all(i.private_ip for i in listed)

    restarted.terminate(["web-1", "web-3", "web-9"], grace_seconds=5)

    assert [i.node_id for i in restarted.list()] == ["web-2"]
    restarted.terminate(["web-2"], grace_seconds=5)
    restarted.terminate(["web-2"], grace_seconds=5)  # gone already: nothing to do
    assert restarted.list() == [] and live(ec2, first.cluster) == []
    assert [i.node_id for i in other.list()] == ["web-1"]


def test_a_gang_with_a_member_ec2_refuses_is_released(
    aws_env: None, moto: MotoServer, ec2: Any, compute_resources: dict[str, Any], tmp_path: Path
) -> None:
    p = provider(tmp_path, moto)
    gang = requests("gang", 3, compute_resources, gang="job-7")
    broken = {**compute_resources, "subnets": ["subnet-0000000000000dead"]}
    gang[2] = LaunchRequest(
        gang[2].request_id, gang[2].node, instance_type="c5.large",
        compute_resources=broken, boot=gang[2].boot, gang="job-7",
    )  # fmt: skip

    outcomes = {o.request_id: o for o in p.launch(gang)}

    assert sorted(outcomes) == ["gang-1", "gang-2", "gang-3"]
    for o in outcomes.values():
        assert o.error is not None and o.error.startswith("InvalidSubnetID.NotFound: ")
        assert not o.retryable and o.instance_id is None
    assert "gang job-7 released: node gang-3 could not be launched" in str(outcomes["gang-1"].error)
    assert p.list() == []
    states = {tags_of(i)["mnp:node"]: i["State"]["Name"] for i in instances(ec2, p.cluster)}
    assert sorted(states) == ["gang-1", "gang-2"]
    assert set(states.values()) <= {"shutting-down", "terminated"}


def test_a_gang_ec2_cannot_place_is_released_and_retryable(
    aws_env: None, moto: MotoServer, ec2: Any, compute_resources: dict[str, Any], tmp_path: Path
) -> None:
    p = provider(tmp_path, moto)
    p.client = NoCapacityAfter(p.client._client, 2)
    alone = requests("solo", 1, compute_resources)
    gang = requests("mpi4", 4, compute_resources, gang="job-9")

    outcomes = {o.request_id: o for o in p.launch(gang)}

    assert len(outcomes) == 4
    for o in outcomes.values():
        assert o.error is not None and o.error.startswith("InsufficientInstanceCapacity: ")
        assert o.retryable
    assert p.list() == []
    p.client.left = 1
    assert [o.ok for o in p.launch(alone)] == [True]
    assert [i.node_id for i in p.list()] == ["solo-1"]


def test_spot_instances_are_capped_at_the_bid(
    aws_env: None, moto: MotoServer, ec2: Any, compute_resources: dict[str, Any], tmp_path: Path
) -> None:
    p = provider(tmp_path, moto)
    sent = record_run_instances(p.client._client)
    cr = {**compute_resources, "type": "SPOT", "bidPercentage": 50}

    [outcome] = p.launch(requests("spot", 1, cr))

    assert outcome.ok, outcome.error
    [instance] = live(ec2, p.cluster)
    assert instance.get("InstanceLifecycle") == "spot"
    assert sent[0]["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "one-time",
                        "InstanceInterruptionBehavior": "terminate", "MaxPrice": "0.0425"},
    }  # fmt: skip


def test_the_launch_template_is_merged(
    aws_env: None, moto: MotoServer, ec2: Any, compute_resources: dict[str, Any], tmp_path: Path
) -> None:
    script = "#!/bin/bash\necho from-the-template\n"
    ec2.create_launch_template(
        LaunchTemplateName="lt-nodes",
        LaunchTemplateData={
            "UserData": base64.b64encode(script.encode()).decode(),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "owner", "Value": "lt"}]}
            ],
        },
    )
    p = provider(tmp_path, moto)
    cr = {**compute_resources, "launchTemplate": {"launchTemplateName": "lt-nodes"}}

    [outcome] = p.launch(requests("tpl", 1, cr))

    assert outcome.ok, outcome.error
    [instance] = live(ec2, p.cluster)
    assert tags_of(instance)["owner"] == "lt" and tags_of(instance)["mnp:node"] == "tpl-1"
    value = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    text = base64.b64decode(value["UserData"]["Value"]).decode()
    assert text == user_data(boot("tpl-1", "tpl"), script)
    assert text.index("from-the-template") < text.index("mnp node tpl-1")
