"""The image policy on nodes with no engine: jobs naming ``busybox`` run as plain processes
under ``process`` and ``auto`` and say so; under the default ``docker`` they fail as on AWS.

Every agent gets a ``DOCKER_HOST`` naming a socket that does not exist, so no engine is
reachable whether or not this machine runs one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration

LINE = "mnp: running as a plain process, without the image busybox"
REASON = "Ran as a process: image busybox not used (imagePolicy {})"


def _environment(c: Cluster, name: str, nodes: int, first: str, tags: dict[str, str]) -> None:
    c.client.call(
        "createComputeEnvironment",
        {
            "computeEnvironmentName": name,
            "type": "MANAGED",
            "mnp": {"nodes": nodes, "vcpus": 1, "memoryMiB": 256, "firstAddress": first},
            "tags": tags,
        },
    )
    c.client.call(
        "createJobQueue",
        {
            "jobQueueName": name,
            "priority": 1,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": name}],
        },
    )


@pytest.fixture(scope="module")
def no_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    """A head with one default node (policy docker), environment ``proc`` (2 nodes, policy
    process, a mapping for ``tools/``) and ``auto`` (1 node), none with an engine."""
    base = tmp_path_factory.mktemp("imagepolicy")
    tools = base / "tools"
    (tools / "bin").mkdir(parents=True)
    show = tools / "bin" / "show"
    show.write_text('#!/bin/sh\necho "show in $(pwd) args=$*"\n')
    show.chmod(0o755)
    c = Cluster(base / "home", nodes=1, vcpus=1, network="loopback")
    c.extra_env["DOCKER_HOST"] = f"unix://{base}/no-engine/docker.sock"
    try:
        c.start()
        mapping = f"entrypoint=show first;path={tools / 'bin'};dir={tools}"
        _environment(c, "proc", 2, "127.0.61.2",
                     {"mnp:imagePolicy": "process", "mnp:image:tools/": mapping})  # fmt: skip
        _environment(c, "auto", 1, "127.0.62.2", {"mnp:imagePolicy": "auto"})
        c.wait_nodes(4)
        c.register("bb", ["echo", "hi"], container={"image": "busybox"})
        yield c, tools
    finally:
        c.stop()


def _attempt_reason(d: dict[str, Any]) -> str:
    return str(d["attempts"][-1]["container"].get("reason") or "")


@pytest.mark.parametrize("policy", ["process", "auto"])
def test_busybox_runs_as_a_process_and_says_so(
    no_engine: tuple[Cluster, Path], policy: str
) -> None:
    c, _ = no_engine
    job = c.submit("hi", "bb", jobQueue="proc" if policy == "process" else "auto")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert d["status"] == "SUCCEEDED", d
    lines = c.logs(job).splitlines()
    assert lines[0].startswith(f"{LINE} (imagePolicy {policy}"), lines
    assert lines[1:] == ["hi"], lines
    reason = _attempt_reason(d)
    if policy == "process":
        assert reason == REASON.format("process"), d
    else:  # and why the engine was not used
        assert reason.startswith("Ran as a process: image busybox not used (imagePolicy auto: ")
        assert "Docker engine" in reason, reason


def test_docker_by_default_fails_as_today(no_engine: tuple[Cluster, Path]) -> None:
    c, _ = no_engine
    job = c.submit("hi", "bb")  # the default environment: no policy tag
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert d["status"] == "FAILED", d
    assert "CannotStartContainerError" in _attempt_reason(d) + str(d.get("statusReason")), d
    assert LINE not in c.logs(job)


def test_a_mapping_gives_entrypoint_path_and_directory(no_engine: tuple[Cluster, Path]) -> None:
    c, tools = no_engine
    c.register("tool", ["second"], container={"image": "tools/show:1"})
    job = c.submit("tool", "tool", jobQueue="proc")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert d["status"] == "SUCCEEDED", (d, c.logs(job))
    lines = c.logs(job).splitlines()
    assert lines == [
        "mnp: running as a plain process, without the image tools/show:1 (imagePolicy process)",
        f"show in {tools} args=first second",
    ]


def test_array_children_run_as_processes(no_engine: tuple[Cluster, Path]) -> None:
    c, _ = no_engine
    job = c.submit("arr", "bb", jobQueue="proc", arrayProperties={"size": 3})
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    assert d["status"] == "SUCCEEDED", d
    for i in range(3):
        assert c.logs(f"{job}:{i}").splitlines() == [f"{LINE} (imagePolicy process)", "hi"]


def test_a_multi_node_job_runs_as_processes(no_engine: tuple[Cluster, Path]) -> None:
    c, _ = no_engine
    probe = {"image": "busybox", "command": ["sh", "-c", "echo node=$AWS_BATCH_JOB_NODE_INDEX"]}
    c.client.register_job_definition({
        "jobDefinitionName": "bb-mnp", "type": "multinode",
        "nodeProperties": {"numNodes": 2, "mainNode": 0, "nodeRangeProperties": [
            {"targetNodes": "0:1", "container": probe}]},
    })  # fmt: skip
    job = c.submit("mnp", "bb-mnp", jobQueue="proc")
    d = c.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)

    def settled() -> list[dict[str, Any]] | None:
        ds = c.client.describe_jobs([f"{job}#{i}" for i in range(2)])
        return ds if all(x["status"] in ("SUCCEEDED", "FAILED") for x in ds) else None

    nodes = wait_for("the nodes to settle", settled, timeout=30)
    assert d["status"] == "SUCCEEDED", (d, nodes)
    for i in range(2):
        assert f"node={i}" in c.logs(f"{job}#{i}"), c.logs(f"{job}#{i}")
        assert LINE in c.logs(f"{job}#{i}")
