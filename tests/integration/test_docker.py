"""Container jobs end to end: a real head node, real agents, a real Docker engine.

Images are built locally by the ``docker_engine`` session fixture (never pulled). Every test
checks from inside the container what it claims (identity, environment, mounts, limits), and
that the containers are gone once the attempt is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_support import DockerEngine
from tests.integration.cluster import Cluster, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker]

MISSING_IMAGE = "127.0.0.1:9/mnp-test/missing:1"
"""A registry on loopback where nothing listens: the pull fails at once, offline."""


@pytest.fixture(scope="module")
def dc(docker_engine: DockerEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("docker") / "home", nodes=2, vcpus=2) as c:
        yield c


def containers_of(engine: DockerEngine, job_id: str) -> list[dict[str, Any]]:
    return list(engine.api().containers(all=True, filters={"label": f"mnp.job-id={job_id}"}))


def gone(engine: DockerEngine, job_id: str) -> None:
    wait_for(f"the containers of {job_id} to be removed", lambda: not containers_of(engine, job_id))


def test_standard_job_env_user_volumes_read_only_root(
    dc: Cluster, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    data = tmp_path / "data dir"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    script = (
        'echo "id=$(id -u):$(id -g) job=$AWS_BATCH_JOB_ID att=$AWS_BATCH_JOB_ATTEMPT '
        'ce=$AWS_BATCH_CE_NAME greet=$GREETING"; cat /data/in.txt; '
        "touch /rootfile 2>/dev/null && echo root-writable || echo root-read-only; "
        "touch /data/x 2>/dev/null && echo data-writable || echo data-read-only; "
        "echo written > /out/result; test -e /.dockerenv && echo in-docker; "
        "echo to-stderr >&2; exit 3"
    )
    dc.register(
        "box",
        ["sh", "-c", script],
        container={
            "image": docker_engine.images["base"],
            "environment": [{"name": "GREETING", "value": "hi there; $x"}],
            "user": "1000:1000",
            "readonlyRootFilesystem": True,
            "volumes": [
                {"name": "data", "host": {"sourcePath": str(data)}},
                {"name": "out", "host": {"sourcePath": str(out)}},
            ],
            "mountPoints": [
                {"sourceVolume": "data", "containerPath": "/data", "readOnly": True},
                {"sourceVolume": "out", "containerPath": "/out"},
            ],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "256"},
            ],
        },
    )
    job = dc.submit("box", "box")
    d = dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    logs = dc.logs(job)
    assert d["status"] == "FAILED" and d["container"]["exitCode"] == 3, (d, logs)
    assert f"id=1000:1000 job={job} att=1 ce=local greet=hi there; $x" in logs
    assert "from the host" in logs and "in-docker" in logs and "to-stderr" in logs
    assert "root-read-only" in logs and "data-read-only" in logs
    assert (out / "result").read_text() == "written\n"
    gone(docker_engine, job)


def test_limits_seen_from_inside(dc: Cluster, docker_engine: DockerEngine) -> None:
    script = (
        "echo shares=$(cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || "
        "cat /sys/fs/cgroup/cpu.weight); "
        "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
        "cat /sys/fs/cgroup/memory.max); echo nofile=$(sh -c 'ulimit -n'); "
        "echo shm=$(stat -f -c '%b*%S' /dev/shm); echo pid1=$(cat /proc/1/comm); "
        "echo tmp=$(stat -f -c '%b*%S' /scratch); test -c /dev/mnp-null && echo device-ok"
    )
    dc.register(
        "limits",
        ["sh", "-c", script],
        container={
            "image": docker_engine.images["base"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "0.5"},
                {"type": "MEMORY", "value": "64"},
            ],
            "ulimits": [{"name": "nofile", "softLimit": 321, "hardLimit": 654}],
            "linuxParameters": {
                "sharedMemorySize": 32,
                "initProcessEnabled": True,
                "tmpfs": [{"containerPath": "/scratch", "size": 16, "mountOptions": ["noexec"]}],
                "devices": [{"hostPath": "/dev/null", "containerPath": "/dev/mnp-null"}],
            },
        },
    )
    job = dc.submit("limits", "limits")
    d = dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    logs = dc.logs(job)
    assert d["status"] == "SUCCEEDED", (d, logs)
    assert "shares=512" in logs and f"mem={64 * 1024 * 1024}" in logs, logs
    assert "nofile=321" in logs and "pid1=docker-init" in logs, logs
    assert "device-ok" in logs, logs
    for name, mib in (("shm", 32), ("tmp", 16)):
        line = next(x for x in logs.splitlines() if x.startswith(f"{name}="))
        blocks, size = line.split("=")[1].split("*")
        assert int(blocks) * int(size) == mib * 1024 * 1024, logs
    gone(docker_engine, job)


def test_array_job_in_containers(dc: Cluster, docker_engine: DockerEngine) -> None:
    dc.register(
        "arr",
        ["sh", "-c", 'echo "index=$AWS_BATCH_JOB_ARRAY_INDEX of $AWS_BATCH_JOB_ARRAY_SIZE"'],
        container={"image": docker_engine.images["base"]},
    )
    job = dc.submit("arr", "arr", arrayProperties={"size": 4})
    assert dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)["status"] == "SUCCEEDED"
    for i in range(4):
        assert f"index={i} of 4" in dc.logs(f"{job}:{i}")
        gone(docker_engine, f"{job}:{i}")


def test_memory_limit_ends_with_out_of_memory_reason(
    dc: Cluster, docker_engine: DockerEngine
) -> None:
    # tail keeps the last "line" in memory, and /dev/zero never ends one
    dc.register(
        "oom",
        ["tail", "/dev/zero"],
        container={
            "image": docker_engine.images["base"],
            "resourceRequirements": [
                {"type": "VCPU", "value": "1"},
                {"type": "MEMORY", "value": "32"},
            ],
            "linuxParameters": {"maxSwap": 0},
        },
    )
    job = dc.submit("oom", "oom")
    d = dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert d["status"] == "FAILED", (d, dc.logs(job))
    reason = d["attempts"][0]["container"]["reason"]
    assert reason == "OutOfMemoryError: Container killed due to memory usage", d
    assert d["attempts"][0]["container"]["exitCode"] == 137, d
    gone(docker_engine, job)


def test_missing_image_fails_to_pull_and_retries_per_rules(
    dc: Cluster, docker_engine: DockerEngine
) -> None:
    rules = {
        "attempts": 2,
        "evaluateOnExit": [{"onReason": "CannotPullContainerError:*", "action": "RETRY"}],
    }
    dc.register("nopull", ["true"], container={"image": MISSING_IMAGE}, retryStrategy=rules)
    job = dc.submit("nopull", "nopull")
    d = dc.wait_status(job, "FAILED", timeout=60)
    assert len(d["attempts"]) == 2, d
    for attempt in d["attempts"]:
        assert attempt["container"]["reason"].startswith("CannotPullContainerError: "), attempt
    exit_rules = {
        "attempts": 3,
        "evaluateOnExit": [{"onReason": "CannotPullContainerError*", "action": "EXIT"}],
    }
    dc.register("nopull1", ["true"], container={"image": MISSING_IMAGE}, retryStrategy=exit_rules)
    once = dc.submit("nopull1", "nopull1")
    assert len(dc.wait_status(once, "FAILED", timeout=60)["attempts"]) == 1
    assert not containers_of(docker_engine, job) and not containers_of(docker_engine, once)


def test_terminate_and_timeout_remove_the_container(
    dc: Cluster, docker_engine: DockerEngine
) -> None:
    dc.register(
        "sleeper",
        ["sh", "-c", "echo up; exec sleep 600"],
        container={"image": docker_engine.images["base"]},
    )
    job = dc.submit("sleeper", "sleeper")
    dc.wait_status(job, "RUNNING", timeout=60)
    wait_for("its container to run", lambda: containers_of(docker_engine, job))
    wait_for("live output", lambda: "up" in dc.logs(job))
    dc.client.terminate(job, "enough")
    d = dc.wait_status(job, "FAILED", timeout=30)
    assert d["statusReason"] == "enough"
    gone(docker_engine, job)

    early = dc.submit("sleeper", "sleeper")  # stopped while its container may be starting
    dc.wait_status(early, "STARTING", "RUNNING", timeout=60)
    dc.client.terminate(early, "changed my mind")
    assert dc.wait_status(early, "FAILED", timeout=30)["statusReason"] == "changed my mind"
    gone(docker_engine, early)

    dc.register(
        "slow",
        ["sleep", "600"],
        container={"image": docker_engine.images["base"]},
        timeout={"attemptDurationSeconds": 60},
    )
    # the cluster's --min-timeout 1 lets a submit-time override go below AWS's 60 s
    slow = dc.submit("slow", "slow", timeout={"attemptDurationSeconds": 1})
    d = dc.wait_status(slow, "FAILED", timeout=30)
    assert d["statusReason"] == "Job attempt duration exceeded timeout", d
    gone(docker_engine, slow)


def test_restarted_agent_removes_its_leftover_containers(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    api = docker_engine.api()
    root = tmp_path / "node root"
    labels = {
        "mnp.job-id": "old-job",
        "mnp.attempt-id": "old-job/1",
        "mnp.node-id": "n-reconcile",
        "mnp.node-root": str(root),
    }
    other = {**labels, "mnp.node-root": str(tmp_path / "another head's node")}
    ids = []
    for name, lab in (("mnp-test-orphan", labels), ("mnp-test-not-mine", other)):
        c = api.create_container(
            docker_engine.images["base"],
            ["sleep", "600"],
            labels=lab,
            name=name,
            host_config=api.create_host_config(network_mode="host"),
        )
        api.start(c["Id"])
        ids.append(c["Id"])
    argv = [
        sys.executable, "-m", "launcher.agent", "--head", f"http://127.0.0.1:{free_port()}",
        "--node-id", "n-reconcile", "--compute-environment", "ce", "--address", "127.0.0.9",
        "--vcpus", "1", "--memory-mib", "64", "--root", str(root), "--no-ssh",
    ]  # fmt: skip
    agent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        mine = {"label": "mnp.node-root=" + str(root)}
        wait_for("the orphan to be removed", lambda: not api.containers(all=True, filters=mine))
        assert [c["Id"] for c in api.containers(filters={"name": "mnp-test-not-mine"})] == [ids[1]]
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(20)
        api.remove_container(ids[1], force=True)


def test_launcher_imports_docker_only_for_container_jobs() -> None:
    code = (
        "import sys; import launcher.agent, launcher.container, launcher.engine; "
        "assert 'docker' not in sys.modules, 'docker imported at module import'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_shared_filesystem_of_the_environment_is_mounted(
    dc: Cluster, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    fsx = tmp_path / "fsx host"
    fsx.mkdir()
    fsx.chmod(0o777)
    shared = {"hostPath": str(fsx), "containerPath": "/fsx"}
    dc.client.call(
        "createComputeEnvironment",
        {
            "computeEnvironmentName": "with-fsx",
            "type": "MANAGED",
            "mnp": {"nodes": 1, "vcpus": 1, "memoryMiB": 512, "firstAddress": "127.0.9.2",
                    "sharedFilesystem": shared},
        },
    )  # fmt: skip
    described = dc.client.call("describeComputeEnvironments", {"computeEnvironments": ["with-fsx"]})
    # the older form is read as a bind and described in the current one
    assert described["computeEnvironments"][0]["mnp"]["sharedFilesystem"] == {
        "kind": "bind", "source": str(fsx), "mountPath": "/fsx"}  # fmt: skip
    dc.client.call(
        "createJobQueue",
        {
            "jobQueueName": "fsxq",
            "priority": 1,
            "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "with-fsx"}],
        },
    )
    dc.register(
        "fsx-writer",
        ["sh", "-c", 'echo "from $AWS_BATCH_JOB_ID" > /fsx/out; cat /fsx/in'],
        container={"image": docker_engine.images["base"]},
    )
    (fsx / "in").write_text("shared in\n")
    job = dc.client.submit({"jobName": "w", "jobQueue": "fsxq", "jobDefinition": "fsx-writer"})
    d = dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert d["status"] == "SUCCEEDED", (d, dc.logs(job))
    assert (fsx / "out").read_text() == f"from {job}\n"
    assert "shared in" in dc.logs(job)
    gone(docker_engine, job)


def test_lost_node_leaves_no_container(docker_engine: DockerEngine, tmp_path: Path) -> None:
    c = Cluster(tmp_path / "home", nodes=1, vcpus=1)
    try:
        c.start()
        c.register("forever", ["sleep", "600"], container={"image": docker_engine.images["base"]})
        job = c.submit("forever", "forever")
        c.wait_status(job, "RUNNING", timeout=60)
        wait_for("its container", lambda: containers_of(docker_engine, job))
        for pid in c.agent_pids().values():
            os.kill(pid, signal.SIGKILL)  # the agent cannot remove anything itself now
        d = c.wait_status(job, "FAILED", timeout=30)
        assert d["statusReason"].startswith("Host lost"), d
        gone(docker_engine, job)  # the head's provider removed what the agent left
    finally:
        c.stop()


def test_attempt_replaces_a_leftover_of_the_same_name(
    docker_engine: DockerEngine, tmp_path: Path
) -> None:
    import asyncio

    from launcher.container import ContainerAttempt
    from launcher.engine import Engine, container_name
    from mnp.spec.containers import ContainerRun
    from mnp.spec.protocol import Assignment, Event

    api = docker_engine.api()
    image = docker_engine.images["base"]
    name = container_name("n-left", "j/1")
    old = api.create_container(image, ["sleep", "600"], name=name, labels={"mnp.node-id": "x"})
    events: list[Event] = []

    async def run() -> int | None:
        engine = Engine("n-left", tmp_path / "root", "127.0.0.2")
        a = Assignment(
            "j/1", "j", 1, ["sh", "-c", "echo replaced"], {}, None, 1.0,
            container=ContainerRun(image),
        )  # fmt: skip
        attempt = ContainerAttempt(a, tmp_path / "root", events.append, engine=engine)
        attempt.start()
        try:
            return await asyncio.wait_for(attempt.wait(), 60)
        finally:
            engine.close()

    assert asyncio.run(run()) == 0, events
    assert [e.kind for e in events if e.kind != "log"] == ["started", "exited"], events
    assert "".join(e.data for e in events if e.kind == "log") == "replaced\n"
    assert not api.containers(all=True, filters={"id": old["Id"]})
    assert not api.containers(all=True, filters={"name": name})


def test_image_without_command_runs_the_image_default(
    dc: Cluster, docker_engine: DockerEngine
) -> None:
    api = docker_engine.api()
    base = docker_engine.images["base"]
    # an image whose CMD greets: committed from the base with only a new default command
    c = api.create_container(base, ["true"])
    image = api.commit(c["Id"], repository="mnp-test/greeter", tag="1",
                       changes=['CMD ["sh", "-c", "echo default command ran"]'])  # fmt: skip
    api.remove_container(c["Id"])
    try:
        body = {
            "jobDefinitionName": "greeter",
            "type": "container",
            "containerProperties": {"image": "mnp-test/greeter:1"},
        }
        dc.client.register_job_definition(body)
        job = dc.submit("greeter", "greeter")
        d = dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
        assert d["status"] == "SUCCEEDED", (d, dc.logs(job))
        assert "default command ran" in dc.logs(job)
        gone(docker_engine, job)
    finally:
        api.remove_image(image["Id"], force=True)


def test_batch_script_and_output_files_in_a_container(
    dc: Cluster, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """sbatch-style: the script runs inside the image with its arguments, and the output goes
    both to the file named by ``mnp.stdout`` (patterns filled in) and to the log stream."""
    dc.register("scripted", [], container={"image": docker_engine.images["base"]})
    outdir = tmp_path / "out dir; 'q'"
    outdir.mkdir()
    job = dc.submit(
        "scripted",
        "scripted",
        containerOverrides={"command": ["first arg", "$two"]},
        mnp={
            "script": '#!/bin/sh\necho "args: $1|$2"\ntest -e /.dockerenv && echo in-docker\n'
            "echo oops >&2\n",
            "stdout": f"{outdir}/%x-%j.out",
        },
    )
    assert dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)["status"] == "SUCCEEDED"
    expected = "args: first arg|$two\nin-docker\n"
    number = dc.client.describe(job)["jobNumber"]  # %j is the job's Slurm id
    text = (outdir / f"scripted-{number}.out").read_text()
    # stderr joins stdout's file, as sbatch does (the engine may deliver either stream first)
    assert sorted(text.splitlines()) == ["args: first arg|$two", "in-docker", "oops"]
    assert expected in dc.logs(job)
    gone(docker_engine, job)
    assert list(dc.home.glob("nodes/*/scripts/*")) == []  # the script went with the attempt


CALL_HOME = r"""
import json, os, urllib.request
uri = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
req = urllib.request.Request(uri, headers={"Authorization": token})
key = json.load(urllib.request.urlopen(req, timeout=10))
health = json.load(urllib.request.urlopen(os.environ["MNP_URL"] + "/healthz", timeout=10))
print("key", key["AccessKeyId"][:4], bool(key["Token"]), "head", health["ok"])
"""


def test_a_container_job_reaches_its_credentials_and_the_head(
    dc: Cluster, docker_engine: DockerEngine
) -> None:
    """A container keeps the machine's network, also on a node of its own namespace: its
    credentials endpoint and head URL are the machine's, not the namespace's."""
    dc.register("home", [sys.executable, "-c", CALL_HOME],
                container={"image": docker_engine.images["mpi"]})  # fmt: skip
    job = dc.submit("home", "home")
    detail = dc.wait_status(job, "SUCCEEDED", "FAILED", timeout=90)
    assert detail["status"] == "SUCCEEDED", dc.logs(job)
    assert dc.logs(job).strip() == "key MNPJ True head True"
