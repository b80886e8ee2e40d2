"""EC2 compute environments end to end, against a real moto server: a head run with
``MNP_EC2=1`` (boto3 pointed at moto by its own ``AWS_ENDPOINT_URL_EC2``) launches instances
for RUNNABLE demand; the instance simulator (``tests/ec2sim``) runs each instance's user data
as cloud-init would, in a network namespace with the instance's private address and its own
metadata service, so the agent it installs from the head joins; standard, array and 4-node
MPI jobs run on the instances; idle instances are scaled in and terminated in moto. Creation
is checked as AWS Batch checks it. Everything is removed afterwards, also on failure."""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mnp.providers import netns
from tests.integration.cluster import wait_for
from tests.integration.ec2world import Ec2World, ec2_world

boto3 = pytest.importorskip("boto3")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not netns.available(), reason="needs root and ip netns"),
    pytest.mark.skipif(
        shutil.which("moto_server") is None, reason="needs moto_server (pip install 'moto[server]')"
    ),
]

CIDR = "10.232.0.0/24"
IP = shutil.which("ip") or "/usr/sbin/ip"
ADDR = f"{IP} -4 -o addr show dev eth0 | awk '{{print $4}}' | cut -d/ -f1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2World]:
    with ec2_world(tmp_path_factory.mktemp("ec2"), CIDR) as w:
        yield w



def create_environment(w: Ec2World, name: str, **extra: Any) -> None:
    c = w.cluster.client
    c.call("createComputeEnvironment", {
        "computeEnvironmentName": name, "type": "MANAGED",
        "computeResources": w.compute_resources(**{"tags": {"team": "hpc"}, **extra}),
    })  # fmt: skip
    c.call("createJobQueue", {"jobQueueName": name, "priority": 1,
           "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": name}]})  # fmt: skip


def submit(w: Ec2World, queue: str, name: str, definition: str, **extra: Any) -> str:
    return w.cluster.client.submit(
        {"jobName": name, "jobQueue": queue, "jobDefinition": definition, **extra}
    )


def test_creation_is_checked_as_aws_batch_checks_it(world: Ec2World) -> None:
    c = world.cluster.client
    with pytest.raises(Exception) as err:
        c.call("createComputeEnvironment", {
            "computeEnvironmentName": "bad", "type": "MANAGED",
            "computeResources": world.compute_resources(instanceTypes=["c5.nosuch"]),
        })  # fmt: skip
    assert "Instance type can only be one of [" in str(err.value)
    bad = world.compute_resources()
    del bad["instanceRole"]
    with pytest.raises(Exception) as err:
        c.call("createComputeEnvironment", {"computeEnvironmentName": "bad", "type": "MANAGED",
                                            "computeResources": bad})  # fmt: skip
    assert "instanceRole" in str(err.value)
    no_image = world.compute_resources()
    del no_image["imageId"]  # as AWS's own CLI example: AWS falls back to its ECS AMI
    with pytest.raises(Exception) as err:
        c.call("createComputeEnvironment", {"computeEnvironmentName": "bad", "type": "MANAGED",
                                            "computeResources": no_image})  # fmt: skip
    assert "computeResources.imageId" in str(err.value) and "python3" in str(err.value)
    listed = c.call("describeComputeEnvironments", {"computeEnvironments": ["bad"]})
    assert listed["computeEnvironments"] == []


def test_demand_launches_instances_that_join_and_run_jobs_then_scale_in(world: Ec2World) -> None:
    w, c = world, world.cluster
    create_environment(w, "fleet")
    c.register("where", ["sh", "-c", f"echo addr=$({ADDR})"])
    job = submit(w, "fleet", "one", "where")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    assert d["status"] == "SUCCEEDED", d
    running = w.instances("running")
    assert len(running) == 1, running
    inst = running[0]
    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    assert tags["mnp:ce"] == "fleet" and tags["mnp:node"] == d["nodeId"] and tags["team"] == "hpc"
    assert tags["mnp:cluster"].startswith("mnp-")
    assert inst["InstanceType"] == "c5.large" and inst["SubnetId"] == w.subnet
    user_data = w.ec2.describe_instance_attribute(InstanceId=inst["InstanceId"],
                                                  Attribute="userData")  # fmt: skip
    text = base64.b64decode(user_data["UserData"]["Value"]).decode()
    assert "multipart/mixed" in text and d["nodeId"] in text
    # the job ran on the instance, at its private address
    assert c.logs(job).split("addr=")[1].split()[0] == inst["PrivateIpAddress"]
    node = next(n for n in c.client.nodes() if n["nodeId"] == d["nodeId"])
    assert node["address"] == inst["PrivateIpAddress"] and node["vcpus"] == 2
    # the agent learnt its instance from the metadata service (IMDSv2)
    assert node["instanceId"] == inst["InstanceId"] and node["instanceType"] == "c5.large"
    assert node["availabilityZone"] == inst["Placement"]["AvailabilityZone"], node
    # an array of 4 one-vCPU children: two more instances at most (maxvCpus 8 = 4 x c5.large)
    c.register("slow", ["sh", "-c", f"echo addr=$({ADDR}); sleep 2"],
               container={"resourceRequirements": [{"type": "VCPU", "value": "2"}]})
    parent = submit(w, "fleet", "arr", "slow", arrayProperties={"size": 4})
    assert c.wait_status(parent, "SUCCEEDED", "FAILED", timeout=120)["status"] == "SUCCEEDED"
    seen = {c.logs(f"{parent}:{i}").split("addr=")[1].split()[0] for i in range(4)}
    live = {i["PrivateIpAddress"] for i in w.instances("running")}
    assert seen <= live and len(seen) >= 2, (seen, live)
    assert len(live) <= 4  # never over maxvCpus
    described = c.client.call("describeComputeEnvironments", {"computeEnvironments": ["fleet"]})
    assert described["computeEnvironments"][0]["status"] == "VALID"
    # idle: scaled in to minvCpus 0, every instance terminated in moto
    wait_for("every instance terminated", lambda: not w.instances("pending", "running"),
             timeout=60)  # fmt: skip
    wait_for("no live node", lambda: all(
        n["status"] in ("STOPPED", "LOST") for n in c.client.call(
            "listNodes", {"includeGone": True})["nodes"] if n["computeEnvironment"] == "fleet"),
        timeout=30)  # fmt: skip
    assert w.sim.instances == {} or wait_for(
        "the simulator to take the instances down", lambda: not w.sim.instances, timeout=30
    )


RANKS = f"""
import re, subprocess
from mpi4py import MPI
comm = MPI.COMM_WORLD
out = subprocess.run([{IP!r}, "-4", "-o", "addr", "show", "eth0"], capture_output=True, text=True)
eth0 = re.search(r"inet ([0-9.]+)/", out.stdout).group(1)
total = comm.allreduce(comm.Get_rank())
print(f"rank={{comm.Get_rank()}} eth0={{eth0}} sum={{total}}", flush=True)
"""


def test_a_four_node_mpi_job_gets_four_instances(world: Ec2World) -> None:
    w, c = world, world.cluster
    create_environment(w, "gangs")
    c.client.register_job_definition({
        "jobDefinitionName": "ranks", "type": "multinode",
        "nodeProperties": {"numNodes": 4, "mainNode": 0,
                           "mnp": {"mpi": "mpich", "tasksPerNode": 2, "readyTimeoutSeconds": 30},
                           "nodeRangeProperties": [
                               {"targetNodes": "0", "container": {
                                   "command": [sys.executable, "-c", RANKS]}},
                               {"targetNodes": "1:", "container": {}}]},
    })  # fmt: skip
    job = submit(w, "gangs", "ranks", "ranks")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=150)
    out = c.logs(f"{job}#0")
    assert d["status"] == "SUCCEEDED", (d, out)
    found = re.findall(r"^rank=(\d+) eth0=(\S+) sum=(\d+)$", out, re.M)
    assert sorted(int(r) for r, _, _ in found) == list(range(8)), out
    assert {s for _, _, s in found} == {"28"}
    per_address = Counter(a for _, a, _ in found)
    ours = {i["PrivateIpAddress"] for i in w.instances() if any(
        t["Key"] == "mnp:ce" and t["Value"] == "gangs" for t in i.get("Tags", []))}  # fmt: skip
    assert set(per_address) <= ours and len(per_address) == 4, (per_address, ours)
    assert set(per_address.values()) == {2}
    assert os.environ.get("MNP_EC2") is None  # the head had it, not the tests


def test_a_spot_interruption_drains_the_node_and_the_job_runs_again_elsewhere(
    world: Ec2World,
) -> None:
    """The notice on the metadata service drains the node; the instance's termination ends
    the attempt with AWS's reason, which the job's retry rule matches; the retry runs on a
    new instance."""
    w, c = world, world.cluster
    create_environment(w, "spot")
    c.register("long", ["sh", "-c", f"echo addr=$({ADDR}); sleep 25"], retryStrategy={
        "attempts": 2, "evaluateOnExit": [{"onStatusReason": "Host EC2*", "action": "RETRY"},
                                          {"onReason": "*", "action": "EXIT"}]})  # fmt: skip
    job = submit(w, "spot", "long", "long")
    first = c.wait_status(job, "RUNNING", timeout=90)
    node_id = first["nodeId"]
    inst = next(i for i in w.instances("running") if any(
        t["Key"] == "mnp:node" and t["Value"] == node_id for t in i.get("Tags", [])))  # fmt: skip
    w.sim.interrupt(inst["InstanceId"], after_seconds=8)

    def drained() -> dict[str, Any] | None:
        n = next(n for n in c.client.nodes() if n["nodeId"] == node_id)
        return n if n.get("draining") else None

    node = wait_for("the node drained by the notice", drained, timeout=20)
    assert "spot instance-action terminate" in node.get("statusReason", ""), node
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=150)
    attempts = d["attempts"]
    assert len(attempts) == 2, d
    assert attempts[0]["statusReason"] == f"Host EC2 (instance {inst['InstanceId']}) terminated."
    assert d["status"] == "SUCCEEDED" and d["nodeId"] != node_id, d


def test_a_head_killed_during_scale_out_leaks_nothing_and_launches_nothing_twice(
    world: Ec2World,
) -> None:
    w, c = world, world.cluster
    create_environment(w, "burst", maxvCpus=16)
    c.register("two", ["sh", "-c", "sleep 1"],
               container={"resourceRequirements": [{"type": "VCPU", "value": "2"}]})
    parent = submit(w, "burst", "burst", "two", arrayProperties={"size": 8})

    def burst() -> list[dict[str, Any]]:
        return [i for i in w.instances() if any(
            t["Key"] == "mnp:ce" and t["Value"] == "burst" for t in i.get("Tags", []))]  # fmt: skip

    wait_for("the first instance of the scale-out", burst, timeout=60, interval=0.005)
    c.kill9()  # mid-launch: some nodes may have instances, some not yet
    c.restart()
    assert c.wait_status(parent, "SUCCEEDED", "FAILED", timeout=150)["status"] == "SUCCEEDED"
    tags = [next(t["Value"] for t in i["Tags"] if t["Key"] == "mnp:node") for i in burst()]
    assert len(tags) == len(set(tags)), Counter(tags)  # no node launched twice
    wait_for("every instance of the scale-out terminated",
             lambda: not [i for i in burst() if i["State"]["Name"] in ("pending", "running")],
             timeout=60)  # fmt: skip
    nodes = [n for n in c.client.call("listNodes", {"includeGone": True})["nodes"]
             if n["computeEnvironment"] == "burst"]  # fmt: skip
    assert nodes and all(n["status"] in ("STOPPED", "LOST") for n in nodes), nodes


def test_an_aws_error_shows_on_the_environment_its_nodes_and_the_waiting_job(
    world: Ec2World,
) -> None:
    """moto refuses an instance profile that does not exist, as EC2 does: the launch backs
    off (1 s, 2 s, …), the environment turns INVALID with AWS's error after three failures in
    a row, the failed nodes are LOST saying why, and the RUNNABLE job says what it waits for."""
    w, c = world, world.cluster
    create_environment(w, "norole", instanceRole="noSuchProfile")
    c.register("quick", ["true"])
    job = submit(w, "norole", "quick", "quick")

    def invalid() -> dict[str, Any] | None:
        got = c.client.call("describeComputeEnvironments", {"computeEnvironments": ["norole"]})
        e = got["computeEnvironments"][0]
        return e if e["status"] == "INVALID" else None

    e = wait_for("the environment INVALID", invalid, timeout=30)
    assert "NoSuchEntity" in e["statusReason"] and "noSuchProfile" in e["statusReason"], e
    nodes = [n for n in c.client.call("listNodes", {"includeGone": True})["nodes"]
             if n["computeEnvironment"] == "norole"]  # fmt: skip
    assert len(nodes) == 3 and all(n["status"] == "LOST" for n in nodes), nodes
    assert all("launch failed: NoSuchEntity" in n["statusReason"] for n in nodes), nodes
    d = wait_for("the job's reason", lambda: (lambda j: j if "NoSuchEntity" in (
        j.get("statusReason") or "") else None)(c.client.describe(job)), timeout=30)  # fmt: skip
    assert d["status"] == "RUNNABLE" and d["statusReason"].startswith("CAPACITY:WAITING - ")
    assert not [i for i in w.instances() if any(
        t["Key"] == "mnp:ce" and t["Value"] == "norole" for t in i.get("Tags", []))]  # fmt: skip
    c.client.call("terminateJob", {"jobId": job, "reason": "test over"})
