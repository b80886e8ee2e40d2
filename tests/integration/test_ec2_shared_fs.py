"""An EC2 environment's shared filesystem, end to end: declared through boto3's ``batch``
client by the ``mnp:sharedFilesystem`` tag (boto3 sends no ``mnp`` block), against a head run
with ``MNP_EC2=1`` and a real moto server; the instance it launches (simulated by
``tests/ec2sim``, whose ``mount`` records its argv since nothing can be mounted here) mounts
FSx for Lustre at the mount path before its agent joins, and runs the job. Everything is
removed afterwards, also on failure."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from mnp.providers import netns
from tests.integration.awsclients import batch_client
from tests.integration.ec2world import Ec2World, ec2_world

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

CIDR = "10.233.0.0/24"  # not test_ec2_environments.py's: both may run at once
REMOTE = "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh"
TAG = "mnp:sharedFilesystem"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2World]:
    with ec2_world(tmp_path_factory.mktemp("ec2fs"), CIDR, scale_in_after=60) as w:
        yield w


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
