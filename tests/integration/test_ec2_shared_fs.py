"""An EC2 environment's shared filesystem, end to end: declared through boto3's ``batch``
client by the ``mnp:sharedFilesystem`` tag (boto3 sends no ``mnp`` block), against a head run
with ``MNP_EC2=1`` and a real moto server; the instance it launches (simulated by
``tests/ec2sim``, whose ``mount`` records its argv since nothing can be mounted here) mounts
FSx for Lustre at the mount path before its agent joins, and runs the job. Everything is
removed afterwards, also on failure."""

from __future__ import annotations

import configparser
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mnp.ec2.userdata import DEFAULT_HOME
from mnp.providers import netns
from tests.ec2sim.simulator import Simulator
from tests.integration.cluster import Cluster
from tests.integration.motoserver import DUMMY_CREDENTIALS, MotoServer

boto3 = pytest.importorskip("boto3")
botocore_config = pytest.importorskip("botocore.config")
botocore_exceptions = pytest.importorskip("botocore.exceptions")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not netns.available(), reason="needs root and ip netns"),
    pytest.mark.skipif(
        shutil.which("moto_server") is None, reason="needs moto_server (pip install 'moto[server]')"
    ),
]

AMI = "ami-12c6146b"  # one of moto's stock images
CIDR = "10.233.0.0/24"  # not test_ec2_environments.py's: both may run at once
REMOTE = "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh"
TAG = "mnp:sharedFilesystem"


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
        return {
            "type": "EC2", "minvCpus": 0, "maxvCpus": 2, "desiredvCpus": 0,
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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2World]:
    """As ``test_ec2_environments.py``'s (instances kept a minute when idle: the test reads
    what the one it launched recorded)."""
    root = tmp_path_factory.mktemp("ec2fs")
    agent_dir = Path(DEFAULT_HOME) / "agent"
    had_home, had_agent = Path(DEFAULT_HOME).exists(), agent_dir.exists()
    before = _node_files()
    with MotoServer() as moto:
        ec2 = boto3.client("ec2", **moto.client_args())
        vpc = ec2.create_vpc(CidrBlock="10.233.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=CIDR)["Subnet"]["SubnetId"]
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
            "MNP_EC2_HEAD_URL": cluster.url, "MNP_SCALE_IN_AFTER_SECONDS": "60",
        })  # fmt: skip
        try:
            with Simulator(ec2, cluster.port, CIDR, workdir=root / "sim") as sim:
                w = Ec2World(cluster, moto, ec2, sim, subnet, group, root)
                cluster.start(wait_nodes=False)
                try:
                    yield w
                finally:
                    cluster.stop()
                    left = [i["InstanceId"] for i in w.instances("pending", "running")]
                    if left:  # the simulator takes them down with it
                        ec2.terminate_instances(InstanceIds=left)
        finally:
            for name in _node_files() - before:
                shutil.rmtree(Path(DEFAULT_HOME) / "nodes" / name, ignore_errors=True)
            if not had_home:
                shutil.rmtree(DEFAULT_HOME, ignore_errors=True)
            elif not had_agent:
                shutil.rmtree(agent_dir, ignore_errors=True)


def batch_client(c: Cluster) -> Any:
    """boto3's client at the head node, with the head's own key (as test_aws_batch.py's)."""
    key, secret = "AKIDEXAMPLE", "secret"
    ini = configparser.ConfigParser()
    ini.read(c.home / "credentials")
    for section in ini.sections():
        if ini.has_option(section, "aws_access_key_id"):
            key = ini.get(section, "aws_access_key_id")
            secret = ini.get(section, "aws_secret_access_key")
            break
    return boto3.client(
        "batch", endpoint_url=c.url, region_name="us-east-1", aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore_config.Config(retries={"max_attempts": 1}, read_timeout=30),
    )  # fmt: skip


def test_a_lustre_filesystem_declared_by_tag_is_mounted_on_the_instance(world: Ec2World) -> None:
    w, c = world, world.cluster
    batch = batch_client(c)
    mount_path = str(w.root / "fsx")  # the stub mounts nothing; the script makes the folder
    bad = {TAG: f"lustre /srv/fsx {mount_path}"}  # a local stand-in: nothing to mount
    with pytest.raises(botocore_exceptions.ClientError) as err:
        batch.create_compute_environment(
            computeEnvironmentName="fsx",
            type="MANAGED",
            computeResources=w.compute_resources(),
            tags=bad,
        )
    assert err.value.response["Error"]["Code"] == "ClientException"
    assert f"tags.{TAG}: remote (2nd word) is required" in str(err.value)

    batch.create_compute_environment(
        computeEnvironmentName="fsx", type="MANAGED", computeResources=w.compute_resources(),
        tags={TAG: f"lustre {REMOTE} {mount_path}"},
    )  # fmt: skip
    batch.create_job_queue(
        jobQueueName="fsx",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": "fsx"}],
    )
    (described,) = batch.describe_compute_environments(computeEnvironments=["fsx"])[
        "computeEnvironments"
    ]
    assert described["tags"][TAG] == f"lustre {REMOTE} {mount_path}"
    # the folder is there before the agent starts: the job sees it
    c.register("sees", ["sh", "-c", f"test -d {mount_path} && echo seen"])
    job = c.submit("sees", "sees", jobQueue="fsx")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    assert d["status"] == "SUCCEEDED", (d, c.logs(job))
    assert c.logs(job).split() == ["seen"]
    (inst,) = [i for i in w.instances() if any(
        t["Key"] == "mnp:ce" and t["Value"] == "fsx" for t in i.get("Tags", []))]  # fmt: skip
    (sim,) = w.sim.wait_simulated([inst["InstanceId"]])
    # FSx for Lustre's documented mount line, and nothing else mounted
    assert sim.mounts() == [["-t", "lustre", "-o", "relatime,flock", REMOTE, mount_path]]
