"""An EC2 world for tests: a real moto server with a VPC, subnet, security group and the
``ecsInstanceRole`` instance profile; the instance simulator (``tests/ec2sim``) bringing its
instances to life in namespaces; and a head run with ``MNP_EC2=1`` pointed at moto by boto3's
own ``AWS_ENDPOINT_URL_EC2``. :func:`ec2_world` removes all of it afterwards, also on
failure: the head, the instances (terminated, their namespaces gone), moto, and what the
instances' agents left in ``/var/lib/mnp``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from mnp.ec2.userdata import DEFAULT_HOME
from tests.ec2sim.simulator import Simulator
from tests.integration.cluster import Cluster
from tests.integration.motoserver import DUMMY_CREDENTIALS, MotoServer

AMI = "ami-12c6146b"  # one of moto's stock images


@dataclass
class Ec2World:
    cluster: Cluster
    moto: MotoServer
    ec2: Any
    sim: Simulator
    subnet: str
    group: str
    root: Path

    def compute_resources(self, **extra: Any) -> dict[str, Any]:
        """An EC2 environment's ``computeResources``: c5.large instances, up to 8 vCPUs."""
        return {
            "type": "EC2", "minvCpus": 0, "maxvCpus": 8, "desiredvCpus": 0,
            "instanceTypes": ["c5.large"], "subnets": [self.subnet],
            "securityGroupIds": [self.group], "instanceRole": "ecsInstanceRole",
            "imageId": AMI, **extra,
        }  # fmt: skip

    def instances(self, *states: str) -> list[dict[str, Any]]:
        pages = self.ec2.get_paginator("describe_instances").paginate()
        found = [i for p in pages for r in p["Reservations"] for i in r["Instances"]]
        return [i for i in found if not states or i["State"]["Name"] in states]


def _node_files() -> set[str]:
    nodes = Path(DEFAULT_HOME) / "nodes"
    return {p.name for p in nodes.iterdir()} if nodes.is_dir() else set()


@contextmanager
def ec2_world(root: Path, cidr: str, scale_in_after: float = 3) -> Iterator[Ec2World]:
    """The world, its subnet ``cidr`` (a /24 of a private /16 no other test uses at the
    same time); idle instances are scaled in after ``scale_in_after`` seconds."""
    agent_dir = Path(DEFAULT_HOME) / "agent"
    had_home, had_agent = Path(DEFAULT_HOME).exists(), agent_dir.exists()
    before = _node_files()
    vpc_cidr = ".".join(cidr.split(".")[:2]) + ".0.0/16"
    with MotoServer() as moto:
        ec2 = boto3.client("ec2", **moto.client_args())
        vpc = ec2.create_vpc(CidrBlock=vpc_cidr)["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
        group = ec2.create_security_group(
            GroupName="mnp-nodes", Description="mnp nodes", VpcId=vpc
        )["GroupId"]
        iam = boto3.client("iam", **moto.client_args())  # instances run with this profile
        iam.create_role(RoleName="ecsInstanceRole", AssumeRolePolicyDocument="{}")
        iam.create_instance_profile(InstanceProfileName="ecsInstanceRole")
        iam.add_role_to_instance_profile(InstanceProfileName="ecsInstanceRole",
                                         RoleName="ecsInstanceRole")  # fmt: skip
        cluster = Cluster(root / "home", nodes=0)
        cluster.extra_env.update({
            "MNP_EC2": "1", "AWS_ENDPOINT_URL_EC2": moto.url, "AWS_DEFAULT_REGION": moto.region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
            "MNP_EC2_HEAD_URL": cluster.url, "MNP_SCALE_IN_AFTER_SECONDS": str(scale_in_after),
        })  # fmt: skip
        try:
            with Simulator(ec2, cluster.port, cidr, workdir=root / "sim") as sim:
                w = Ec2World(cluster, moto, ec2, sim, subnet, group, root)
                cluster.start(wait_nodes=False)
                try:
                    yield w
                finally:
                    cluster.stop()
                    left = [i["InstanceId"] for i in w.instances("pending", "running")]
                    if left:  # a failed test's: the simulator takes them down with it
                        ec2.terminate_instances(InstanceIds=left)
        finally:
            for name in _node_files() - before:
                shutil.rmtree(Path(DEFAULT_HOME) / "nodes" / name, ignore_errors=True)
            if not had_home:
                shutil.rmtree(DEFAULT_HOME, ignore_errors=True)
            elif not had_agent:
                shutil.rmtree(agent_dir, ignore_errors=True)
