"""A compute environment's image policy: its tags checked, the head's build of an attempt,
the node's choice between the engine and a plain process, and how that process runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import click
import pytest

from launcher.attempt import StandIn
from launcher.container import without_image
from launcher.engine import Engine
from launcher.process import AttemptProcess
from mnp.build.container import attempt_container
from mnp.build.images import (
    IMAGE_POLICY_TAG,
    ImageMapping,
    ImagePolicy,
    image_policy,
    matches,
    policy_of,
)
from mnp.cli.admin import _image_tags
from mnp.errors import InvalidInput
from mnp.spec.containers import ContainerRun, WithoutEngine
from mnp.spec.environments import ComputeEnvironment, ComputeEnvironmentType, State
from mnp.spec.protocol import Assignment, Event, Wiring
from mnp.spec.resources import Resources
from tests.unit.doors import Doors
from tests.unit.helpers_core import make_job

# --- the tags ----------------------------------------------------------------------------


def test_no_tags_is_docker() -> None:
    assert image_policy(None) == ImagePolicy("docker", ())
    assert image_policy({"team": "a"}).policy == "docker"


@pytest.mark.parametrize("policy", ["docker", "process", "auto"])
def test_each_policy_is_read(policy: str) -> None:
    assert image_policy({IMAGE_POLICY_TAG: policy}).policy == policy


def test_a_mapping_is_read() -> None:
    got = image_policy({
        "mnp:image:busybox": "entrypoint=/opt/bb/bin/busybox;path=/opt/bb/bin:/opt/x;dir=/opt/bb",
        "mnp:image:ghcr.io/org/": " command = run 'a b' ; ",
    })  # fmt: skip
    assert dict(got.mappings) == {
        "busybox": ImageMapping(("/opt/bb/bin/busybox",), (), ("/opt/bb/bin", "/opt/x"), "/opt/bb"),
        "ghcr.io/org/": ImageMapping((), ("run", "a b"), (), None),
    }


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        (IMAGE_POLICY_TAG, "podman", "must be one of docker, process, auto"),
        ("mnp:image:", "dir=/x", "must name an image"),
        ("mnp:image:" + "a" * 120, "dir=/x", "a tag key has at most 128"),
        ("mnp:image:x", "dir=/" + "a" * 256, "a tag value has at most 256"),
        ("mnp:image:x", " ; ", "must be key=value pairs"),
        ("mnp:image:x", "user=root", "key one of entrypoint, command, path, dir"),
        ("mnp:image:x", "dir", "must be key=value"),
        ("mnp:image:x", "dir=opt/x", "dir must be an absolute path"),
        ("mnp:image:x", "path=/a:b", "path must be absolute directories"),
        ("mnp:image:x", "command=", "command must be a command line"),
        ("mnp:image:x", "entrypoint='a", "entrypoint must be a command line"),
        ("mnp:image:x", "dir=/a;dir=/b", "dir is given twice"),
    ],
)
def test_a_bad_tag_is_refused_naming_it_and_the_rule(key: str, value: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        image_policy({key: value})
    [error] = caught.value.errors
    assert error.path == f"tags.{key}" and rule in error.message, error


def test_every_bad_tag_is_reported_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        image_policy({IMAGE_POLICY_TAG: "x", "mnp:image:a": "dir=rel", "mnp:image:b": "cd=/"})
    assert {e.path for e in caught.value.errors} == {
        f"tags.{IMAGE_POLICY_TAG}", "tags.mnp:image:a", "tags.mnp:image:b",
    }  # fmt: skip


def test_stored_tags_gone_bad_read_as_docker() -> None:
    assert policy_of({IMAGE_POLICY_TAG: "x"}, "ce") == ImagePolicy()


@pytest.mark.parametrize(
    ("key", "image", "expected"),
    [
        ("busybox", "busybox", True),
        ("busybox", "busybox:1.36", True),
        ("busybox", "busybox@sha256:abc", True),
        ("busybox", "busyboxes", False),
        ("ghcr.io/org/", "ghcr.io/org/tool:2", True),
        ("ghcr.io/org", "ghcr.io/organisation/tool", False),
        ("python:", "python:3.12", True),
    ],
)
def test_which_images_a_key_names(key: str, image: str, expected: bool) -> None:
    assert matches(key, image) is expected


def test_the_longest_matching_key_wins_and_star_is_any_image() -> None:
    p = image_policy({
        IMAGE_POLICY_TAG: "process", "mnp:image:*": "dir=/any",
        "mnp:image:ghcr.io/": "dir=/ghcr", "mnp:image:ghcr.io/org/": "dir=/org",
    })  # fmt: skip
    assert (p.mapping_for("ghcr.io/org/t") or ImageMapping()).directory == "/org"
    assert (p.mapping_for("ghcr.io/else/t") or ImageMapping()).directory == "/ghcr"
    assert (p.mapping_for("busybox") or ImageMapping()).directory == "/any"
    assert image_policy({"mnp:image:a": "dir=/a"}).mapping_for("b") is None


def test_ce_create_options_become_the_tags() -> None:
    assert _image_tags("auto", ("busybox=dir=/opt/bb;path=/opt/bb/bin",)) == {
        IMAGE_POLICY_TAG: "auto", "mnp:image:busybox": "dir=/opt/bb;path=/opt/bb/bin",
    }  # fmt: skip
    assert _image_tags(None, ()) == {}
    with pytest.raises(click.BadParameter, match="IMAGE=MAPPING"):
        _image_tags(None, ("noequals",))


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    d = Doors(tmp_path / "home")
    yield d
    d.close()


def test_a_create_with_a_bad_tag_is_refused_and_makes_nothing(doors: Doors) -> None:
    body = {"computeEnvironmentName": "ip", "type": "UNMANAGED", "mnp": {"nodes": 0},
            "tags": {IMAGE_POLICY_TAG: "sometimes"}}  # fmt: skip
    for r in (doors.native("createComputeEnvironment", body),
              doors.aws("createComputeEnvironment", body)):  # fmt: skip
        assert r.status_code == 400, r.text
        assert f"tags.{IMAGE_POLICY_TAG}" in r.text and "docker, process, auto" in r.text, r.text
    described = doors.native("describeComputeEnvironments", {"computeEnvironments": ["ip"]})
    assert described.json()["computeEnvironments"] == []
    body["tags"] = {IMAGE_POLICY_TAG: "process", "mnp:image:busybox": "dir=/opt"}
    assert doors.native("createComputeEnvironment", body).status_code == 200


# --- the head's build ------------------------------------------------------------------------


def _ces(tags: dict[str, str]) -> dict[str, ComputeEnvironment]:
    ce = ComputeEnvironment("e", ComputeEnvironmentType.MANAGED, State.ENABLED, "local", 1,
                            Resources(1, 64, 0), 0, doc={"tags": tags})  # fmt: skip
    return {"e": ce}


def _job(image: str | None) -> object:
    job = make_job("j1", command=["echo", "hi"])
    job.spec = replace(job.spec, container=replace(job.spec.container, image=image))
    return job


def test_the_build_carries_the_policy_and_the_mapping() -> None:
    tags = {IMAGE_POLICY_TAG: "process", "mnp:image:busybox": "command=sh;path=/bb;dir=/w"}
    run = attempt_container(_job("busybox:1"), _ces(tags), "e")  # type: ignore[arg-type]
    assert run is not None and run.image == "busybox:1"
    assert run.without_engine == WithoutEngine("process", (), ("sh",), ("/bb",), "/w")
    assert ContainerRun.from_wire(run.to_wire()) == run
    auto = attempt_container(_job("other"), _ces({IMAGE_POLICY_TAG: "auto"}), "e")  # type: ignore[arg-type]
    assert auto is not None and auto.without_engine == WithoutEngine("auto")


def test_docker_builds_as_before() -> None:
    for tags in ({}, {IMAGE_POLICY_TAG: "docker", "mnp:image:busybox": "dir=/w"}):
        run = attempt_container(_job("busybox"), _ces(tags), "e")  # type: ignore[arg-type]
        assert run is not None and run.without_engine is None
        assert "withoutEngine" not in run.to_wire()  # the wire (and goldens) as before
    assert attempt_container(_job(None), _ces({IMAGE_POLICY_TAG: "process"}), "e") is None  # type: ignore[arg-type]


# --- the node's choice -------------------------------------------------------------------------


class FakeEngine:
    def __init__(self, problem: str | None) -> None:
        self._problem = problem
        self.asked = 0

    def problem(self) -> str | None:
        self.asked += 1
        return self._problem


def _assignment(command: list[str], without: WithoutEngine | None, **kw: object) -> Assignment:
    run = ContainerRun("busybox", user="nobody", without_engine=without)
    return Assignment("j/1", "j", 1, command, {}, None, 1.0, container=run, **kw)  # type: ignore[arg-type]


def test_process_never_asks_the_engine() -> None:
    engine = FakeEngine(None)
    plain, stand_in = without_image(_assignment(["echo", "hi"], WithoutEngine("process")),
                                    lambda: engine)  # type: ignore[arg-type,return-value]  # fmt: skip
    assert plain.container is None and plain.command == ["echo", "hi"] and engine.asked == 0
    assert stand_in == StandIn("busybox", "imagePolicy process", ())
    assert stand_in.reason == "Ran as a process: image busybox not used (imagePolicy process)"


def test_auto_uses_a_usable_engine_else_a_process() -> None:
    a = _assignment(["echo", "hi"], WithoutEngine("auto"))
    assert without_image(a, lambda: FakeEngine(None)) == (a, None)  # type: ignore[arg-type,return-value]
    plain, stand_in = without_image(a, lambda: FakeEngine("no engine here"))  # type: ignore[arg-type,return-value]
    assert plain.container is None
    assert stand_in is not None and stand_in.why == "imagePolicy auto: no engine here"


def test_docker_and_plain_jobs_are_left_alone() -> None:
    engine = FakeEngine("none")
    for a in (_assignment(["true"], None), Assignment("j/1", "j", 1, ["true"], {}, None, 1.0)):
        assert without_image(a, lambda: engine) == (a, None)  # type: ignore[arg-type,return-value]
    assert engine.asked == 0


def test_the_mapping_stands_in_for_the_image() -> None:
    w = WithoutEngine("process", ("/bb/busybox",), ("sh", "-c", "echo default"), ("/bb",), "/w")
    plain, stand_in = without_image(_assignment([], w), FakeEngine)  # type: ignore[arg-type]
    assert plain.command == ["/bb/busybox", "sh", "-c", "echo default"]
    assert plain.workdir == "/w" and stand_in is not None and stand_in.path == ("/bb",)
    plain, _ = without_image(_assignment(["echo", "hi"], w, workdir="/mine"), FakeEngine)  # type: ignore[arg-type]
    assert plain.command == ["/bb/busybox", "echo", "hi"] and plain.workdir == "/mine"


def test_an_mnp_nodes_command_is_its_launcher_and_stays() -> None:
    wiring = Wiring(authorized_key="k", files={}, ssh_environment={})
    w = WithoutEngine("process", ("/bb/busybox",), ("sh",), ("/bb",), None)
    plain, stand_in = without_image(_assignment(["@MNP_PYTHON@", "-m", "launcher.wire"], w,
                                                wiring=wiring), FakeEngine)  # type: ignore[arg-type]  # fmt: skip
    assert plain.command == ["@MNP_PYTHON@", "-m", "launcher.wire"] and plain.wiring == wiring
    assert plain.container is None and stand_in is not None


def test_engine_problem_without_any_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr("launcher.engine.DOCKER_SOCKET", str(tmp_path / "none.sock"))
    engine = Engine("n1", tmp_path, "127.0.0.2")
    try:
        assert "no Docker engine is configured" in (engine.problem() or "")
    finally:
        engine.close()


def test_engine_problem_with_an_unreachable_engine_is_kept_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    engine = Engine("n1", tmp_path, "127.0.0.2")
    tries: list[int] = []
    real = engine.api

    def counted() -> object:
        tries.append(1)
        return real()

    monkeypatch.setattr(engine, "api", counted)
    try:
        first = engine.problem()
        assert first is not None and "cannot reach the Docker engine" in first
        assert engine.problem() == first and len(tries) == 1  # remembered, not tried again
    finally:
        engine.close()


# --- the process that stands in -------------------------------------------------------------


def _run(tmp_path: Path, a: Assignment, stand_in: StandIn) -> list[Event]:
    events: list[Event] = []

    async def go() -> None:
        proc = AttemptProcess(a, tmp_path / "root", events.append, env=dict(os.environ),
                              stand_in=stand_in)  # fmt: skip
        proc.start()
        try:
            await asyncio.wait_for(proc.wait(), 20)
            proc.read_logs()
        finally:
            proc.close()

    asyncio.run(go())
    return events


def test_the_process_says_so_first_and_finds_the_mapped_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "opt bin"
    bin_dir.mkdir()
    tool = bin_dir / "tool"
    tool.write_text('#!/bin/sh\necho "tool in $(pwd)"\n')
    tool.chmod(0o755)
    a = Assignment("j/1", "j", 1, ["tool"], {}, None, 1.0, workdir=str(tmp_path))
    events = _run(tmp_path, a, StandIn("busybox", "imagePolicy process", (str(bin_dir),)))
    out = "".join(e.data for e in events if e.kind == "log" and e.stream == "stdout")
    assert out.splitlines() == [
        "mnp: running as a plain process, without the image busybox (imagePolicy process)",
        f"tool in {tmp_path}",
    ]
    [exited] = [e for e in events if e.kind == "exited"]
    assert exited.exit_code == 0
    assert exited.reason == "Ran as a process: image busybox not used (imagePolicy process)"


def test_nothing_to_run_names_the_image_and_the_tag(tmp_path: Path) -> None:
    a = Assignment("j/1", "j", 1, [], {}, None, 1.0)
    [event] = _run(tmp_path, a, StandIn("busybox", "imagePolicy process"))
    assert event.kind == "start_failed"
    assert "image busybox not used" in (event.reason or "")
    assert "mnp:image:busybox" in (event.reason or "")
