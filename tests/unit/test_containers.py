"""The head-side container builder: AWS container fields → ContainerRun (golden), checks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from launcher.container import IMAGE_PYTHON, LIB_DIR, in_container
from launcher.engine import container_name, exec_argv
from mnp.build.container import container_run, cpu_shares, field_errors
from mnp.errors import InvalidInput
from mnp.service.models import RegisterJobDefinition
from mnp.service.validation import parse
from mnp.spec.containers import ContainerRun
from mnp.spec.protocol import PYTHON_PLACEHOLDER, Assignment, Wiring
from mnp.spec.resources import ContainerSpec
from mnp.spec.sharedfs import SharedFilesystem
from tests.unit import goldens

FSX = {"hostPath": "/fsx host", "containerPath": "/fsx"}  # the older form of the field

FULL: dict[str, Any] = {
    "image": "registry.example/team/app:1.2",
    "command": ["python3", "train.py", "--lr", "0.1"],
    "environment": [{"name": "A", "value": "1"}],
    "resourceRequirements": [
        {"type": "VCPU", "value": "1.5"},
        {"type": "MEMORY", "value": "512"},
        {"type": "GPU", "value": "2"},
    ],
    "user": "1000:1000",
    "privileged": True,
    "readonlyRootFilesystem": True,
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
    "volumes": [
        {"name": "data", "host": {"sourcePath": "/srv/data set; $x"}},
        {"name": "scratch"},
    ],
    "mountPoints": [
        {"sourceVolume": "data", "containerPath": "/data", "readOnly": True},
        {"sourceVolume": "scratch", "containerPath": "/scratch"},
    ],
    "linuxParameters": {
        "sharedMemorySize": 256,
        "tmpfs": [{"containerPath": "/run/t", "size": 64, "mountOptions": ["noexec", "mode=1777"]}],
        "initProcessEnabled": True,
        "devices": [{"hostPath": "/dev/fuse", "permissions": ["READ", "WRITE"]}],
        "maxSwap": 0,
        "swappiness": 10,
    },
}


def test_full_definition_matches_golden() -> None:
    run = container_run(ContainerSpec.from_wire(FULL), SharedFilesystem.from_doc(FSX))
    assert run is not None
    goldens.check("containers", "full.json", json.dumps(run.to_wire(), indent=2) + "\n")
    assert ContainerRun.from_wire(run.to_wire()) == run


def test_no_image_means_a_plain_process() -> None:
    assert container_run(ContainerSpec.from_wire({"command": ["true"]})) is None


def test_resources_as_aws_applies_them() -> None:
    spec = ContainerSpec.from_wire({"image": "i", "command": ["true"], "vcpus": 2, "memory": 64})
    run = container_run(spec)
    assert run is not None
    assert (run.cpu_shares, run.memory_mib, run.gpus, run.mounts) == (2048, 64, 0, ())
    assert cpu_shares(0.001) == 2 and cpu_shares(0.25) == 256


def test_swappiness_ignored_without_max_swap() -> None:
    spec = ContainerSpec.from_wire(
        {"image": "i", "command": ["x"], "linuxParameters": {"swappiness": 5}}
    )
    run = container_run(spec)
    assert run is not None and run.swappiness is None and run.max_swap_mib is None


def test_shared_filesystem_defaults_to_the_same_path() -> None:
    run = container_run(
        ContainerSpec.from_wire({"image": "i"}), SharedFilesystem.from_doc({"hostPath": "/fsx"})
    )
    assert run is not None
    assert [(m.source, m.target, m.read_only) for m in run.mounts] == [("/fsx", "/fsx", False)]


def test_assignment_round_trips_with_and_without_container() -> None:
    run = container_run(ContainerSpec.from_wire(FULL))
    a = Assignment("j/1", "j", 1, ["true"], {}, None, 1.0, container=run)
    assert Assignment.from_wire(json.loads(json.dumps(a.to_wire()))) == a
    plain = Assignment("j/1", "j", 1, ["true"], {}, None, 1.0)
    assert "container" not in plain.to_wire()
    assert Assignment.from_wire(plain.to_wire()).container is None


def test_field_errors_name_every_bad_field() -> None:
    bad = {
        "user": 5,
        "privileged": "yes",
        "ulimits": [{"name": "files", "softLimit": 10, "hardLimit": 5}, {"name": "nofile"}],
        "volumes": [{"name": "v", "host": {"sourcePath": "relative"}}],
        "mountPoints": [{"sourceVolume": "v"}],
        "linuxParameters": {
            "sharedMemorySize": 0,
            "swappiness": 101,
            "maxSwap": -1,
            "tmpfs": [{"containerPath": "/t"}, {"size": 1}],
            "devices": [{"hostPath": "/dev/x", "permissions": ["EXEC"]}],
        },
    }
    paths = [p for p, _ in field_errors(bad, "containerProperties")]
    assert paths == [
        "containerProperties.user",
        "containerProperties.privileged",
        "containerProperties.ulimits[0].name",
        "containerProperties.ulimits[0].softLimit",
        "containerProperties.ulimits[1].softLimit",
        "containerProperties.ulimits[1].hardLimit",
        "containerProperties.volumes[0].host.sourcePath",
        "containerProperties.mountPoints[0].containerPath",
        "containerProperties.linuxParameters.sharedMemorySize",
        "containerProperties.linuxParameters.maxSwap",
        "containerProperties.linuxParameters.swappiness",
        "containerProperties.linuxParameters.tmpfs[0].size",
        "containerProperties.linuxParameters.tmpfs[1].containerPath",
        "containerProperties.linuxParameters.devices[0].permissions",
    ]
    assert field_errors(FULL, "c") == []


def test_registration_names_bad_container_fields() -> None:
    body = {
        "jobDefinitionName": "d",
        "type": "container",
        "containerProperties": {
            "image": "i",
            "command": ["true"],
            "ulimits": [{"name": "nofile", "softLimit": 9, "hardLimit": 1}],
            "linuxParameters": {"swappiness": 500},
        },
    }
    with pytest.raises(InvalidInput) as info:
        parse(RegisterJobDefinition, body)
    text = str(info.value)
    assert "containerProperties.ulimits[0].softLimit: 9 exceeds hardLimit 1" in text
    assert "containerProperties.linuxParameters.swappiness" in text


def test_container_names_and_exec_argv_survive_hostile_ids() -> None:
    name = container_name("local-1", "job id; $(rm -rf /)#0/1")
    assert name == "mnp-local-1-job_id____rm_-rf____0_1"
    argv = exec_argv("docker", name, {"A": "x y; $z", "B": "'"}, "echo $A")
    assert argv == [
        "docker", "exec", "-i", "-e", "A=x y; $z", "-e", "B='", name, "/bin/sh", "-c", "echo $A",
    ]  # fmt: skip


def test_main_node_command_runs_launcher_wire_with_the_image_python() -> None:
    run = container_run(ContainerSpec.from_wire({"image": "i"}))
    wiring = Wiring("ssh-ed25519 AAAA", {}, {})
    a = Assignment(
        "j#0/1", "j#0", 1, [PYTHON_PLACEHOLDER, "-m", "launcher.wire", "--", "hostname"],
        {}, None, 1.0, wiring=wiring, container=run,
    )  # fmt: skip
    b = in_container(a)
    assert b.command[:2] == [IMAGE_PYTHON, "-c"] and b.command[3:] == ["--", "hostname"]
    assert "runpy.run_module('launcher.wire'" in b.command[2]
    assert b.container is not None
    assert [(m.target, m.read_only) for m in b.container.mounts] == [
        (f"{LIB_DIR}/launcher", True), (f"{LIB_DIR}/mnp", True),
    ]  # fmt: skip
    assert not b.container.init
    plain = replace(a, wiring=None)
    assert in_container(plain) == plain
    held = in_container(replace(a, wiring=replace(wiring, hold=True)))
    assert held.container is not None and held.container.init  # sleep ends on SIGTERM


def test_engine_host_config_matches_golden() -> None:
    docker = pytest.importorskip("docker")
    from launcher.engine import host_config

    run = container_run(ContainerSpec.from_wire(FULL), SharedFilesystem.from_doc(FSX))
    assert run is not None
    # with a fixed API version the SDK builds the HostConfig without talking to an engine
    api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    config = host_config(api, run, Path("/nodes/n1/jobs/j/1"), share_host=True)
    goldens.check("containers", "host_config.json", json.dumps(config, indent=2) + "\n")
    plain = host_config(api, ContainerRun("i"), Path("/w"))
    assert plain["NetworkMode"] == "host" and "IpcMode" not in plain and "Memory" not in plain
