"""A compute environment's shared filesystem: validation at both doors, the older form
still read, what containers, the attempt's mount namespace and SSH hosts are given."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher import mountns
from mnp.build.container import attempt_shared_fs, container_run
from mnp.spec.containers import Mount
from mnp.spec.environments import ComputeEnvironment, ComputeEnvironmentType, Host, State
from mnp.spec.protocol import Assignment
from mnp.spec.resources import ContainerSpec, Resources
from mnp.spec.sharedfs import SharedFilesystem, SharedFilesystemKind, shared_fs_errors
from tests.unit.doors import Doors

NFS = SharedFilesystem(SharedFilesystemKind.NFS, "/srv/nfs stand-in", "/shared")


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    d = Doors(tmp_path / "home")
    yield d
    d.close()


def _ce(fs: dict[str, Any], name: str = "fs") -> dict[str, Any]:
    return {"computeEnvironmentName": name, "type": "UNMANAGED",
            "mnp": {"nodes": 0, "sharedFilesystem": fs}}  # fmt: skip


@pytest.mark.parametrize(
    ("fs", "field", "rule"),
    [
        ({"source": "/a", "mountPath": "/b"}, "kind", "must be one of lustre, nfs, efs, bind"),
        ({"kind": "cifs", "source": "/a", "mountPath": "/b"}, "kind", "must be one of"),
        ({"kind": "bind", "mountPath": "/b"}, "source", "absolute path"),
        ({"kind": "efs", "source": "fs-1:/", "mountPath": "/b"}, "source", "absolute path"),
        ({"kind": "bind", "source": "/a"}, "mountPath", "absolute path"),
        ({"kind": "bind", "source": "/a", "mountPath": "shared"}, "mountPath", "absolute"),
        ({"kind": "bind", "source": "/a", "mountPath": "/x/../etc"}, "mountPath", "'..'"),
        ({"kind": "bind", "source": "/a", "mountPath": "/proc"}, "mountPath", "system"),
        ({"kind": "bind", "source": "/a", "mountPath": "/tmp/"}, "mountPath", "system"),
        ({"kind": "bind", "source": "/a", "mountPath": "/b\n"}, "mountPath", "newline"),
        ({"kind": "bind", "source": "/a", "mountPath": "/b", "opts": 1}, "opts", "not a field"),
        ({"hostPath": "rel"}, "hostPath", "absolute path"),
        ({"hostPath": "/a", "containerPath": "b"}, "containerPath", "absolute path"),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_field(
    doors: Doors, fs: dict[str, Any], field: str, rule: str
) -> None:
    for r in (doors.native("createComputeEnvironment", _ce(fs)),
              doors.aws("createComputeEnvironment", _ce(fs))):  # fmt: skip
        assert r.status_code == 400, r.text
        assert f"mnp.sharedFilesystem.{field}" in r.text and rule in r.text, r.text
    body = doors.aws("createComputeEnvironment", _ce(fs)).json()
    assert body["__type"] == "ClientException"
    described = doors.native("describeComputeEnvironments", {"computeEnvironments": ["fs"]})
    assert described.json()["computeEnvironments"] == []  # nothing was made


def test_every_problem_is_reported_at_once() -> None:
    got = dict(shared_fs_errors({"kind": "x", "source": "a", "mountPath": "b"}, "fs"))
    assert set(got) == {"fs.kind", "fs.source", "fs.mountPath"}


def test_a_good_declaration_and_the_older_form_are_described_alike(doors: Doors) -> None:
    fs = {"kind": "lustre", "source": "/fsx stand-in", "mountPath": "/fsx"}
    doors.native("createComputeEnvironment", _ce(fs)).raise_for_status()
    old = {"hostPath": "/data", "containerPath": "/fsx"}
    doors.native("createComputeEnvironment", _ce(old, "old")).raise_for_status()
    r = doors.native("describeComputeEnvironments", {"computeEnvironments": ["fs", "old"]})
    got = {c["computeEnvironmentName"]: c["mnp"]["sharedFilesystem"]
           for c in r.json()["computeEnvironments"]}  # fmt: skip
    assert got == {"fs": fs, "old": {"kind": "bind", "source": "/data", "mountPath": "/fsx"}}


def test_an_older_record_reads_as_a_bind() -> None:
    ce = ComputeEnvironment("e", ComputeEnvironmentType.MANAGED, State.ENABLED, "local", 1,
                            Resources(1, 64, 0), 0, shared_filesystem=NFS)  # fmt: skip
    doc = json.loads(json.dumps(ce.to_doc()))
    assert ComputeEnvironment.from_doc(doc).shared_filesystem == NFS
    doc["shared_filesystem"] = {"hostPath": "/data"}
    assert ComputeEnvironment.from_doc(doc).shared_filesystem == SharedFilesystem(
        SharedFilesystemKind.BIND, "/data", "/data"
    )


def test_containers_get_it_at_the_mount_path_and_volumes_may_name_it() -> None:
    spec = ContainerSpec(["true"], {}, Resources(1, 64, 0), image="img", extra={
        "volumes": [{"name": "v", "host": {"sourcePath": "/shared/run 1"}}],
        "mountPoints": [{"sourceVolume": "v", "containerPath": "/work"}]})  # fmt: skip
    run = container_run(spec, NFS)
    assert run is not None
    # the Docker engine sees the machine: volumes on the mount path come from its source
    assert run.mounts == (
        Mount("/shared", "/srv/nfs stand-in", False),
        Mount("/work", "/srv/nfs stand-in/run 1", False),
    )
    taken = ContainerSpec(["true"], {}, Resources(1, 64, 0), image="img", extra={
        "volumes": [{"name": "v", "host": {"sourcePath": "/shared"}}],
        "mountPoints": [{"sourceVolume": "v", "containerPath": "/shared",
                         "readOnly": True}]})  # fmt: skip
    run = container_run(taken, NFS)
    assert run is not None and run.mounts == (Mount("/shared", "/srv/nfs stand-in", True),)


def test_an_ssh_hosts_environment_has_it_at_the_mount_path_itself() -> None:
    ce = ComputeEnvironment("e", ComputeEnvironmentType.UNMANAGED, State.ENABLED, "local", 0,
                            Resources(1, 64, 0), 0, shared_filesystem=NFS)  # fmt: skip
    assert attempt_shared_fs({"e": ce}, "e") == NFS
    ce.hosts.append(Host("h", "10.0.0.5", "/key"))
    assert attempt_shared_fs({"e": ce}, "e") == SharedFilesystem(
        SharedFilesystemKind.NFS, "/shared", "/shared"
    )
    assert attempt_shared_fs({"e": ce}, "other") is None


def test_the_assignment_carries_it_to_mountns() -> None:
    a = Assignment("a", "j", 1, ["true"], {}, None, 1.0, shared_filesystem=NFS)
    assert Assignment.from_wire(json.loads(json.dumps(a.to_wire()))).shared_filesystem == NFS
    assert "sharedFilesystem" not in Assignment("a", "j", 1, ["true"], {}, None, 1.0).to_wire()
    argv = mountns.argv("py", ["cmd"], "/t", shared=(NFS.source, NFS.mount_path))
    at = argv.index("--shared-source")
    assert argv[at : at + 4] == ["--shared-source", NFS.source, "--shared-path", "/shared"]
    assert argv[-2:] == ["--", "cmd"]


def test_paths_on_the_mount_path_are_reached_through_the_source() -> None:
    from launcher.attempts import on_machine

    a = Assignment("a", "j", 1, ["true"], {}, None, 1.0, workdir="/shared/wd",
                   stdout_path="/shared/o.log", stderr_path="/elsewhere/e.log",
                   shared_filesystem=NFS)  # fmt: skip
    got = on_machine(a)
    assert (got.workdir, got.stdout_path, got.stderr_path) == (
        "/srv/nfs stand-in/wd",
        "/srv/nfs stand-in/o.log",
        "/elsewhere/e.log",
    )
    assert NFS.on_machine("/sharedx") == "/sharedx"  # a prefix is not a parent
    # and the command is taken back to the mount path
    assert mountns._on_mount("/srv/nfs stand-in/wd", NFS.source, "/shared") == "/shared/wd"
    assert mountns._on_mount("/srv/nfs", NFS.source, "/shared") == "/srv/nfs"
