"""A shared filesystem's ``remote`` (what an EC2 instance mounts): its one check, records
without it still read, the ``mnp:sharedFilesystem`` tag (boto3 sends no ``mnp`` block), an
EC2 environment's ``mnp`` block, and the instances' user data given it."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mnp.ec2 import userdata as ud
from mnp.ec2.catalog import Catalogue
from mnp.errors import InvalidInput
from mnp.providers import LaunchOutcome, LaunchRequest
from mnp.scheduler.ec2scaling import InstanceLaunch
from mnp.spec.environments import ComputeEnvironment
from mnp.spec.resources import Resources
from mnp.spec.sharedfs import SharedFilesystem, SharedFilesystemKind, shared_fs_errors
from tests.unit.helpers_core import Head

LUSTRE = "fs-0123abcd.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh"
EFS = "fs-0123abcd.efs.us-east-1.amazonaws.com"
TAG = "mnp:sharedFilesystem"


def errors(d: Any, nodes: Any = None) -> dict[str, str]:
    return dict(shared_fs_errors(d, "fs", nodes))


@pytest.mark.parametrize(
    ("kind", "remote"),
    [("lustre", LUSTRE), ("lustre", "10.0.0.7@tcp:/fsx_1"), ("efs", EFS), ("efs", f"{EFS}:/team"),
     ("nfs", "nas.internal:/export/home"), ("nfs", "[fd00::5]:/export")],
)  # fmt: skip
def test_a_good_remote_is_accepted_without_a_source(kind: str, remote: str) -> None:
    doc = {"kind": kind, "remote": remote, "mountPath": "/fsx"}
    assert errors(doc) == {} and errors(doc, "mount") == {}
    fs = SharedFilesystem.from_doc(doc)
    # where an instance has it: at the mount path, with remote mounted there
    assert fs == SharedFilesystem(SharedFilesystemKind(kind), "/fsx", "/fsx", remote)
    assert SharedFilesystem.from_doc(json.loads(json.dumps(fs.to_doc()))) == fs


@pytest.mark.parametrize(
    ("kind", "remote", "says"),
    [("lustre", "fs-1.fsx.amazonaws.com:/abc", "is not a Lustre source <dns>@tcp:/<mountname>"),
     ("lustre", "fs-1@tcp:/a-b", "is not a Lustre source"),
     ("lustre", "-oremount@tcp:/x", "is not a Lustre source"),
     ("efs", "fs-1:/a b", "is not an EFS DNS name[:/path]"),
     ("efs", "/exports", "is not an EFS DNS name"),
     ("nfs", "nas", "is not an NFS source host:/export"),
     ("nfs", "-o:/x", "is not an NFS source"),
     ("bind", "nas:/x", "is not used by a bind filesystem"),
     ("lustre", 5, "must be a string")],
)  # fmt: skip
def test_a_bad_remote_is_refused_naming_it(kind: str, remote: Any, says: str) -> None:
    got = errors({"kind": kind, "source": "/srv/fsx", "remote": remote, "mountPath": "/fsx"})
    assert set(got) == {"fs.remote"} and says in got["fs.remote"], got


def test_the_same_check_refuses_it_in_the_user_data() -> None:
    fs = SharedFilesystem(SharedFilesystemKind.LUSTRE, "/fsx", "/fsx")
    rule = errors({"kind": "lustre", "remote": "nas:/x", "mountPath": "/fsx"})["fs.remote"]
    with pytest.raises(InvalidInput, match=rule.replace("[", r"\[")):
        ud.mount_argv(fs, "nas:/x")


def test_neither_source_nor_remote_is_refused() -> None:
    got = errors({"kind": "lustre", "mountPath": "/fsx"})
    assert set(got) == {"fs.source"} and "or give remote" in got["fs.source"]


def test_each_use_needs_its_own_field() -> None:
    remote_only = {"kind": "lustre", "remote": LUSTRE, "mountPath": "/fsx"}
    # local nodes bind source: without it, nothing to bind
    assert set(errors(remote_only, "bind")) == {"fs.source"}
    # instances mount remote: without it, nothing to mount
    stand_in = {"kind": "lustre", "source": "/srv/fsx", "mountPath": "/fsx"}
    got = errors(stand_in, "mount")
    assert set(got) == {"fs.remote", "fs.source"}, got  # and a source elsewhere would mislead
    assert errors({**remote_only, "source": "/fsx/"}, "mount") == {}
    # a bind on an instance binds a directory of the instance: source, as ever
    assert errors({"kind": "bind", "source": "/data", "mountPath": "/fsx"}, "mount") == {}
    assert set(errors({"kind": "bind", "mountPath": "/fsx"}, "mount")) == {"fs.source"}


def test_records_without_remote_read_and_write_as_before() -> None:
    old = {"kind": "nfs", "source": "/srv/nfs", "mountPath": "/shared"}
    fs = SharedFilesystem.from_doc(old)
    assert fs.remote is None and fs.to_doc() == old  # no remote key in what is stored
    assert SharedFilesystem.from_doc({"hostPath": "/data", "containerPath": "/fsx"}) == (
        SharedFilesystem(SharedFilesystemKind.BIND, "/data", "/fsx")
    )


# --- the service: the tag and the mnp block -----------------------------------------------------


class FakeEc2:
    """The EC2 provider as the service and the fleet use it: a catalogue; launches recorded."""

    def __init__(self) -> None:
        self.launched: list[LaunchRequest] = []

    def catalogue(self) -> Catalogue:
        return Catalogue.from_rows([{"name": "c5.large", "vcpus": 2, "memoryMiB": 4096}])

    def launch(self, requests: Sequence[LaunchRequest]) -> list[LaunchOutcome]:
        self.launched += requests
        return [LaunchOutcome(r.request_id, error="FakeEc2: launches nothing") for r in requests]


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    yield h
    h.store.close()


@pytest.fixture
def ec2_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Head, FakeEc2]]:
    monkeypatch.setenv("MNP_EC2", "1")
    h = Head.open(tmp_path / "home")
    fake = FakeEc2()
    h.scheduler.fleet._providers["ec2"] = fake  # type: ignore[assignment]
    yield h, fake
    h.store.close()


def compute_resources() -> dict[str, Any]:
    return {"type": "EC2", "minvCpus": 0, "maxvCpus": 8, "instanceTypes": ["c5.large"],
            "subnets": ["subnet-0a1b2c3d"], "securityGroupIds": ["sg-0123abcd"],
            "instanceRole": "ecsInstanceRole", "imageId": "ami-12c6146b"}  # fmt: skip


def create(h: Head, name: str, **body: Any) -> dict[str, Any]:
    return h.api["createComputeEnvironment"]({"computeEnvironmentName": name, **body})


def refusal(h: Head, name: str, **body: Any) -> str:
    with pytest.raises(InvalidInput) as e:
        create(h, name, **body)
    assert name not in h.state.ces  # nothing was made
    return str(e.value)


def described_fs(h: Head, name: str) -> Any:
    r = h.api["describeComputeEnvironments"]({"computeEnvironments": [name]})
    return r["computeEnvironments"][0]["mnp"].get("sharedFilesystem")


def test_the_tag_declares_it_for_local_environments(head: Head) -> None:
    create(head, "un", type="UNMANAGED", tags={TAG: "bind /srv/data /data", "team": "hpc"})
    assert described_fs(head, "un") == {"kind": "bind", "source": "/srv/data", "mountPath": "/data"}
    # an AWS-shaped MANAGED request (local nodes without MNP_EC2): a stand-in source
    create(head, "man", type="MANAGED", computeResources=compute_resources(),
           tags={TAG: "lustre /srv/fsx /fsx"})  # fmt: skip
    assert head.state.ces["man"].shared_filesystem == SharedFilesystem(
        SharedFilesystemKind.LUSTRE, "/srv/fsx", "/fsx"
    )
    assert head.state.ces["man"].doc["tags"][TAG] == "lustre /srv/fsx /fsx"  # kept, as AWS


@pytest.mark.parametrize(
    ("value", "says"),
    [("lustre /fsx", "must be three words, <kind> <remote-or-source> <mountPath>"),
     ("cifs /srv/x /x", "kind (1st word) is required and must be one of"),
     ("bind /srv/x fsx", "mountPath (3rd word) is required and must be an absolute path"),
     ("bind /srv/x /proc", "mountPath (3rd word) must not be / or a system directory"),
     (f"lustre {LUSTRE} /fsx", "source (2nd word) is required: this environment's nodes bind"),
     ("lustre nas:/x /fsx", "remote (2nd word) is not a Lustre source")],
)  # fmt: skip
def test_a_bad_tag_is_refused_naming_it(head: Head, value: str, says: str) -> None:
    why = refusal(head, "bad", type="UNMANAGED", tags={TAG: value})
    assert f"tags.{TAG}: {says}" in why, why


def test_the_tag_and_the_mnp_block_cannot_both_declare_it(head: Head) -> None:
    why = refusal(head, "both", type="UNMANAGED", tags={TAG: "bind /a /b"},
                  mnp={"nodes": 0, "sharedFilesystem": {"kind": "bind", "source": "/a",
                                                        "mountPath": "/b"}})  # fmt: skip
    assert f"tags.{TAG}: cannot be given with mnp.sharedFilesystem" in why


def test_an_ec2_environment_takes_it_from_the_tag_or_the_mnp_block(
    ec2_head: tuple[Head, FakeEc2],
) -> None:
    h, _ = ec2_head
    create(h, "tagged", type="MANAGED", computeResources=compute_resources(),
           tags={TAG: f"lustre {LUSTRE} /fsx"})  # fmt: skip
    want = SharedFilesystem(SharedFilesystemKind.LUSTRE, "/fsx", "/fsx", LUSTRE)
    assert h.state.ces["tagged"].ec2 and h.state.ces["tagged"].shared_filesystem == want
    assert described_fs(h, "tagged") == {"kind": "lustre", "source": "/fsx", "mountPath": "/fsx",
                                         "remote": LUSTRE}  # fmt: skip
    block = {"kind": "efs", "remote": f"{EFS}:/team", "mountPath": "/shared"}
    create(h, "block", type="MANAGED", computeResources=compute_resources(),
           mnp={"sharedFilesystem": block})  # fmt: skip
    ce = h.state.ces["block"]
    assert ce.ec2 and ce.shared_filesystem == SharedFilesystem.from_doc(block)
    # kept across a restart of the head
    h.store.close()
    again = Head.open(h.home)
    try:
        assert again.state.ces["block"].shared_filesystem == SharedFilesystem.from_doc(block)
        assert again.state.ces["tagged"].shared_filesystem == want
    finally:
        again.store.close()


def test_an_ec2_environment_refuses_what_its_instances_cannot_mount(
    ec2_head: tuple[Head, FakeEc2],
) -> None:
    h, _ = ec2_head
    cr = compute_resources()
    why = refusal(h, "x", type="MANAGED", computeResources=cr, tags={TAG: "lustre /srv/fsx /fsx"})
    assert f"tags.{TAG}: remote (2nd word) is required: an EC2 environment's instances" in why
    assert f"tags.{TAG}: source (2nd word) must be mountPath or absent" in why
    stand_in = {"kind": "nfs", "source": "/srv/nfs", "mountPath": "/fsx"}
    why = refusal(h, "x", type="MANAGED", computeResources=cr, mnp={"sharedFilesystem": stand_in})
    assert "mnp.sharedFilesystem.remote: is required" in why
    # every problem at once: the filesystem's and computeResources'
    why = refusal(h, "x", type="MANAGED", computeResources={**cr, "subnets": ["vpc-1"]},
                  tags={TAG: "lustre nas:/x /fsx"})  # fmt: skip
    assert "computeResources.subnets[0]" in why and f"tags.{TAG}: remote (2nd word)" in why
    # local nodes' settings mean nothing to instances: named, not ignored
    why = refusal(h, "x", type="MANAGED", computeResources=cr,
                  mnp={"nodes": 2, "vcpus": 2, "sharedFilesystem": None})  # fmt: skip
    assert "mnp.nodes: is not a setting of an EC2 environment" in why
    assert "mnp.vcpus: is not a setting of an EC2 environment" in why


def test_its_instances_user_data_mounts_it(ec2_head: tuple[Head, FakeEc2]) -> None:
    h, fake = ec2_head
    create(h, "fsx", type="MANAGED", computeResources=compute_resources(),
           tags={TAG: f"lustre {LUSTRE} /fsx"})  # fmt: skip
    h.scheduler.fleet.launch_instances(
        "fsx", [InstanceLaunch("c5.large", 1, Resources(2, 4096, 0))]
    )
    (request,) = fake.launched
    assert request.boot is not None
    ce: ComputeEnvironment = h.state.ces["fsx"]
    assert request.boot.shared_fs == ce.shared_filesystem and request.boot.fs_remote == LUSTRE
    script = ud.node_script(request.boot)
    assert f"\nmount -t lustre -o relatime,flock {LUSTRE} /fsx\n" in script
