"""The EC2 instance simulator against a real moto server: two instances of a test's subnet
come alive in namespaces of their own, run their MIME user data as root, read their metadata
service over IMDSv2, reach the head on loopback through the forward and each other across
the bridge; a spot interruption serves its notice and then terminates one; and nothing of
the simulator is left — also when the test fails inside it."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mnp.providers import netns
from tests.ec2sim.simulator import Simulator, scripts_of
from tests.integration.cluster import pid_alive, wait_for
from tests.integration.motoserver import MotoServer

boto3 = pytest.importorskip("boto3")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not netns.available(), reason="needs root and ip netns"),
    pytest.mark.skipif(
        shutil.which("moto_server") is None, reason="needs moto_server (pip install 'moto[server]')"
    ),
]

REPO = Path(__file__).resolve().parents[2]
AMI = "ami-12c6146b"  # one of moto's stock images

BOOT = r"""#!/bin/bash
set -u
TOKEN=$(curl -sf -X PUT http://169.254.169.254/latest/api/token \
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
md() { curl -sf -H "X-aws-ec2-metadata-token: $TOKEN" "http://169.254.169.254/latest/$1"; }
ME=$(md meta-data/local-ipv4)
echo "instance-id $(md meta-data/instance-id)"
echo "local-ipv4 $ME"
echo "eth0 $(ip -4 -o addr show dev eth0 | awk '{print $4}')"
echo "user-data $(md user-data | sha256sum | cut -d' ' -f1)"
ADDRESSES=$(curl -sf http://127.0.0.1:HEAD_PORT/)
echo "head $ADDRESSES"
mount -t lustre "fs-1@tcp:/fsx x" /fsx
"""

PEER = r"""#!/bin/bash
ME=$(ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
PEER=$(curl -sf http://127.0.0.1:HEAD_PORT/ | tr ' ' '\n' | grep -vx "$ME")
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7000)); s.listen()
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
' "$ME" >/dev/null 2>&1 &
echo "listener $!"
python3 -c '
import socket, sys, time
deadline = time.monotonic() + 15
while True:
    try:
        with socket.create_connection((sys.argv[1], 7000), timeout=1) as c:
            print("peer-said", c.recv(100).decode()); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.05)
' "$PEER"
"""


def mime(*scripts: str) -> str:
    msg = MIMEMultipart()
    msg.attach(MIMEText("#cloud-config\nruncmd: []\n", "cloud-config"))
    for s in scripts:
        msg.attach(MIMEText(s, "x-shellscript"))
    return msg.as_string()


def ours(tag: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line for line in listed.splitlines() if f"mnp-{tag}-" in line]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def subnet(ec2: Any, cidr: str) -> str:
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    return str(ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"])


class HeadStandIn:
    """A tiny HTTP server on 127.0.0.1 of the machine's namespace answering ``body``."""

    def __init__(self) -> None:
        self.body = b""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HeadStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_user_data_parts_are_the_shell_scripts_in_order() -> None:
    assert [s.content for s in scripts_of(mime("echo a", "echo b").encode())] == [
        b"echo a",
        b"echo b",
    ]
    assert [s.name for s in scripts_of(b"#!/bin/sh\necho x\n")] == ["part-001"]
    assert scripts_of(b"#cloud-config\n") == [] and scripts_of(b"") == []


def test_instances_boot_talk_and_are_interrupted(moto: MotoServer, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", **moto.client_args())
    cidr = "10.231.0.0/24"
    subnet_id = subnet(ec2, cidr)
    with HeadStandIn() as head:
        user_data = mime(
            BOOT.replace("HEAD_PORT", str(head.port)), PEER.replace("HEAD_PORT", str(head.port))
        )
        run = ec2.run_instances(
            ImageId=AMI, InstanceType="c5n.large", MinCount=2, MaxCount=2,
            SubnetId=subnet_id, UserData=user_data,
        )  # fmt: skip
        ids = [i["InstanceId"] for i in run["Instances"]]
        addresses = {i["InstanceId"]: i["PrivateIpAddress"] for i in run["Instances"]}
        head.body = " ".join(addresses.values()).encode()
        sim = Simulator(ec2, head.port, cidr, workdir=tmp_path)
        with sim:
            insts = sim.wait_simulated(ids)
            for inst in insts:
                assert sim.wait_user_data(inst.instance_id) == [0, 0], inst.log.read_text()
            for inst in insts:
                log = inst.log.read_text()
                peer = next(a for i, a in addresses.items() if i != inst.instance_id)
                for line in [
                    f"instance-id {inst.instance_id}",
                    f"local-ipv4 {inst.address}",
                    f"eth0 {inst.address}/24",
                    f"user-data {hashlib.sha256(user_data.encode()).hexdigest()}",
                    f"head {head.body.decode()}",
                    f"peer-said {peer}",
                ]:
                    assert f"\n{line}\n" in log, log
                assert inst.mounts() == [["-t", "lustre", "fs-1@tcp:/fsx x", "/fsx"]]
            listeners = {
                inst.instance_id: int(inst.log.read_text().split("listener ")[1].split()[0])
                for inst in insts
            }
            assert all(pid_alive(p) for p in listeners.values())

            gone, stays = insts
            sim.interrupt(gone.instance_id, after_seconds=3.0)
            read = "from mnp.ec2.imds import Imds; n = Imds().spot_notice(); print(*n)"
            notice = subprocess.run(
                ["ip", "netns", "exec", gone.namespace, sys.executable, "-c", read],
                capture_output=True, text=True, timeout=10, cwd=REPO,
            )  # fmt: skip
            assert notice.returncode == 0, notice.stderr
            action, when = notice.stdout.split()
            assert action == "terminate"
            ahead = datetime.strptime(when, "%Y-%m-%dT%H:%M:%S%z") - datetime.now(UTC)
            assert timedelta(seconds=90) < ahead <= timedelta(minutes=2)

            sim.wait_gone(gone.instance_id)
            state = ec2.describe_instances(InstanceIds=[gone.instance_id])
            assert state["Reservations"][0]["Instances"][0]["State"]["Name"] in (
                "shutting-down",
                "terminated",
            )
            assert not Path(f"/run/netns/{gone.namespace}").exists()
            assert not pid_alive(listeners[gone.instance_id])
            assert Path(f"/run/netns/{stays.namespace}").exists()
            assert pid_alive(listeners[stays.instance_id])
        assert ours(sim.tag) == []
        assert not pid_alive(listeners[stays.instance_id])
        assert not any(Path("/etc/netns").glob(f"mnp-{sim.tag}-*"))
        machine = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True)
        assert "10.231.0." not in machine.stdout


def test_everything_goes_when_the_test_fails_inside(moto: MotoServer, tmp_path: Path) -> None:
    ec2 = boto3.client("ec2", **moto.client_args())
    cidr = "10.232.0.0/24"
    subnet_id = subnet(ec2, cidr)
    marker = tmp_path / "sleeper"
    plain = f"#!/bin/bash\nsleep 600 &\necho $! > {marker}\nexit 3\n"
    ec2.run_instances(
        ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet_id, UserData=plain
    )  # a plain script: run as is
    sim = Simulator(ec2, 1, cidr)
    with pytest.raises(RuntimeError, match="the test failed"), sim:
        inst = next(iter(wait_for("an instance", lambda: list(sim.instances.values()))))
        assert sim.wait_user_data(inst.instance_id) == [3]
        sleeper = int(marker.read_text())
        assert pid_alive(sleeper)
        raise RuntimeError("the test failed")
    assert ours(sim.tag) == []
    assert not pid_alive(sleeper)
