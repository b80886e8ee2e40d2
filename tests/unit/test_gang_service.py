"""The MNP lifecycle through the real Service + Scheduler (temp SQLite, fake clock).

Four (or five) UNMANAGED nodes that serve SSH are registered by hand; the tests drive the
head node with ``tick``, ``poll`` and ``report`` exactly as node agents and the HTTP layer do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mnp.build.multinode import master_port
from mnp.scheduler.attempts import TIMEOUT_REASON
from mnp.spec.jobs import NEVER_FITS
from mnp.spec.protocol import PYTHON_PLACEHOLDER, Assignment, Poll, PollReply, Ready, Register
from tests.unit.helpers_core import HOSTILE, Head

LOST_AFTER = 10.0
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMkBwLcDSfqk3YL6uRsiMgyMMBv4aft4iHgNOT6BHNGT"
MAIN_CMD = ["python", "train.py", HOSTILE]
EXIT_REASON = "Essential container in task exited"
WIRING_FILES = {
    "id_ed25519",
    "ssh_config",
    "known_hosts",
    "hostfile",
    "hostfile.openmpi",
    "hostfile.mpich",
    "ssh-wrapper",
}


# --- harness ----------------------------------------------------------------------------------


def address(i: int) -> str:
    return f"127.0.0.{20 + i}"


def add_nodes(h: Head, count: int, first: int = 0, addr: Any = address) -> None:
    for i in range(first, first + count):
        h.sessions.register(
            Register(
                f"n{i}", "ce", addr(i), 4, 4096, 0, 1000 + i, ssh_port=40000 + i,
                ssh_host_key=HOST_KEY,
            )
        )  # fmt: skip


def define(
    h: Head,
    name: str = "mnp",
    *,
    every_node: bool = False,
    num: int = 4,
    main: int = 0,
    **extra: Any,
) -> None:
    """Main node ``main`` runs MAIN_CMD; the others run ``worker`` (every-node mode) or
    nothing (mpirun mode: they serve SSH)."""
    res = [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "256"}]
    others: dict[str, Any] = {"resourceRequirements": res}
    if every_node:
        others["command"] = ["worker", HOSTILE]
    h.api["registerJobDefinition"](
        {
            "jobDefinitionName": name,
            "type": "multinode",
            "nodeProperties": {
                "numNodes": num,
                "mainNode": main,
                "nodeRangeProperties": [
                    {"targetNodes": ":", "container": others},
                    {
                        "targetNodes": str(main),
                        "container": {"command": MAIN_CMD, "resourceRequirements": res},
                    },
                ],
                "mnp": {"mpi": "none" if every_node else "openmpi"},
            },
            **extra,
        }
    )


def poll(h: Head, node_id: str) -> PollReply:
    running = sorted(h.runs.get(node_id, set()))
    return h.sessions.poll(Poll(node_id, running, 0.0, [], h.epoch(node_id)))


def poll_all(h: Head) -> dict[str, PollReply]:
    return {n: poll(h, n) for n, node in h.state.nodes.items() if node.status.value == "ACTIVE"}


def assignments(replies: dict[str, PollReply]) -> dict[str, tuple[str, Assignment]]:
    """job id → (node id, assignment)."""
    out: dict[str, tuple[str, Assignment]] = {}
    for node_id, reply in replies.items():
        for a in reply.assignments:
            assert a.job_id not in out, f"{a.job_id} assigned twice"
            out[a.job_id] = (node_id, a)
    return out


def kills(replies: dict[str, PollReply]) -> dict[str, list[str]]:
    """node id → kill reasons (nodes with kills only)."""
    return {n: [k.reason for k in r.kills] for n, r in replies.items() if r.kills}


def statuses(h: Head, job_id: str, num: int = 4) -> list[str]:
    return [h.status(f"{job_id}#{i}") for i in range(num)]


def place(h: Head, job_id: str) -> tuple[str, Assignment]:
    """Tick until the job's gang is placed; the main node's (node, assignment)."""
    for _ in range(3):
        h.scheduler.tick()
        if h.status(job_id) == "STARTING":
            break
    got = assignments(poll_all(h))
    assert list(got) == [f"{job_id}#0"], got
    return got[f"{job_id}#0"]


def start(h: Head, job_id: str) -> dict[int, tuple[str, Assignment]]:
    """Place the gang, start the main node, then every other node; index → (node, a)."""
    main_node, main = place(h, job_id)
    h.started(main_node, main.attempt_id)
    got = assignments(poll_all(h))
    for node_id, a in got.values():
        h.started(node_id, a.attempt_id)
    out = {0: (main_node, main)}
    for job, (node_id, a) in got.items():
        out[int(job.rsplit("#", 1)[1])] = (node_id, a)
    return out


def free_vcpus(h: Head) -> dict[str, float]:
    return {n["nodeId"]: n["freeVcpus"] for n in h.api["listNodes"]({})["nodes"]}


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home", lost_after_seconds=LOST_AFTER)
    h.environment()
    h.queue()
    yield h
    h.close()


@pytest.fixture
def four(head: Head) -> Head:
    """Four SSH-serving nodes n0..n3 and the mpirun-mode definition ``mnp`` (4 nodes)."""
    add_nodes(head, 4)
    define(head, timeout={"attemptDurationSeconds": 120})
    return head


# --- placing: main node first -----------------------------------------------------------------


def test_tick_places_the_gang_and_assigns_only_the_main_node(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    h.scheduler.tick()
    assert h.status(job_id) == "RUNNABLE"
    h.scheduler.tick()
    assert h.status(job_id) == "STARTING"
    assert statuses(h, job_id) == ["STARTING", "RUNNABLE", "RUNNABLE", "RUNNABLE"]
    got = assignments(poll_all(h))
    assert list(got) == [f"{job_id}#0"]
    node_id, a = got[f"{job_id}#0"]
    assert (node_id, a.attempt_id, a.attempt) == ("n0", f"{job_id}#0/1", 1)
    assert a.timeout_seconds == 120
    # wiring: the job's key, and every file the main node needs
    w = a.wiring
    assert w is not None and not w.hold
    assert w.authorized_key.startswith("ssh-ed25519 ")
    assert w.authorized_key.endswith(f" mnp-{job_id}")
    assert set(w.files) == WIRING_FILES
    assert w.files["id_ed25519"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert w.files["hostfile"] == "n0\nn1\nn2\nn3\n"
    assert w.files["hostfile.openmpi"] == "n0 slots=4\nn1 slots=4\nn2 slots=4\nn3 slots=4\n"
    assert w.files["hostfile.mpich"] == "n0:4\nn1:4\nn2:4\nn3:4\n"
    assert "Host n3 127.0.0.23\n    HostName 127.0.0.23\n    Port 40003\n" in w.files["ssh_config"]
    assert w.files["known_hosts"].splitlines()[1] == f"[127.0.0.21]:40001 {HOST_KEY}"
    # the command runs under launcher.wire, mpirun mode, unchanged after --
    assert a.command[:5] == [PYTHON_PLACEHOLDER, "-m", "launcher.wire", "--mpi", "openmpi"]
    assert a.command[a.command.index("--") + 1 :] == MAIN_CMD
    env = a.environment
    assert env["AWS_BATCH_JOB_ID"] == f"{job_id}#0"
    assert env["AWS_BATCH_JOB_ATTEMPT"] == "1"
    assert (env["AWS_BATCH_JOB_NODE_INDEX"], env["AWS_BATCH_JOB_NUM_NODES"]) == ("0", "4")
    assert env["AWS_BATCH_JOB_MAIN_NODE_INDEX"] == "0"
    assert "AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS" not in env
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == (address(0), str(master_port(job_id, set())))
    assert w.ssh_environment == env
    # the whole gang is held
    assert free_vcpus(h) == {"n0": 0, "n1": 0, "n2": 0, "n3": 0}


def test_children_start_once_the_main_node_runs_and_hold_in_mpirun_mode(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = place(h, job_id)
    assert assignments(poll_all(h)) == {}, "nothing for the children before the main node runs"
    h.clock.advance(3)
    h.started(main_node, main.attempt_id)
    detail = h.describe(job_id)
    assert (detail["status"], detail["startedAt"]) == ("RUNNING", h.clock.now)
    assert statuses(h, job_id) == ["RUNNING", "STARTING", "STARTING", "STARTING"]
    replies = poll_all(h)
    assert replies["n0"].ready == [], "not every node has started yet"
    got = assignments(replies)
    assert sorted(got) == [f"{job_id}#{i}" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        node_id, a = got[f"{job_id}#{i}"]
        assert (node_id, a.attempt_id) == (f"n{i}", f"{job_id}#{i}/1")
        assert a.command == []
        assert a.timeout_seconds is None, "the timeout covers the whole job, on the main node"
        assert a.wiring is not None and main.wiring is not None
        assert a.wiring.hold is True
        # every node gets the gang's key, ssh_config and known_hosts (ssh from any node)
        assert a.wiring.files == main.wiring.files
        assert {"id_ed25519", "ssh_config", "known_hosts"} <= set(a.wiring.files)
        assert a.wiring.authorized_key == main.wiring.authorized_key
        assert a.environment["AWS_BATCH_JOB_NODE_INDEX"] == str(i)
        assert a.environment["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == address(0)
        assert a.environment["MASTER_PORT"] == main.environment["MASTER_PORT"]


def test_describe_shows_each_node_jobs_address_as_aws_does(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = place(h, job_id)
    h.started(main_node, main.attempt_id)
    got = assignments(poll_all(h))
    for i in range(4):
        container = h.describe(f"{job_id}#{i}")["container"]
        assert container["networkInterfaces"] == [
            {"attachmentId": f"mnp-n{i}", "privateIpv4Address": address(i)}
        ], container
    assert "networkInterfaces" not in h.describe(job_id)["container"], "the parent has none"
    assert len(got) == 3


def test_every_node_mode_children_run_their_own_command(head: Head) -> None:
    add_nodes(head, 3)
    define(head, every_node=True, num=3, main=1)
    job_id = head.submit(jobDefinition="mnp")
    for _ in range(2):
        head.scheduler.tick()
    got = assignments(poll_all(head))
    assert list(got) == [f"{job_id}#1"], "the main node (index 1) starts first"
    main_node, main = got[f"{job_id}#1"]
    assert main_node == "n1"
    assert "--no-probe" in main.command
    assert main.command[main.command.index("--") + 1 :] == MAIN_CMD
    assert main.environment["MNP_NODE_ALIASES"] == "n1 n0 n2"
    head.started(main_node, main.attempt_id)
    got = assignments(poll_all(head))
    assert sorted(got) == [f"{job_id}#0", f"{job_id}#2"]
    for _, a in got.values():
        assert a.command == ["worker", HOSTILE], "not wrapped in launcher.wire"
        assert a.wiring is not None and a.wiring.hold is False
        assert a.environment["AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS"] == address(1)


def test_the_main_node_gets_ready_once_every_node_started(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = place(h, job_id)
    h.started(main_node, main.attempt_id)
    got = assignments(poll_all(h))
    for i in (1, 2):
        node_id, a = got[f"{job_id}#{i}"]
        h.started(node_id, a.attempt_id)
        assert poll(h, main_node).ready == []
    node_id, a = got[f"{job_id}#3"]
    h.started(node_id, a.attempt_id)
    assert poll(h, main_node).ready == [Ready(f"{job_id}#0/1")]
    assert poll(h, main_node).ready == [], "sent once"
    assert all(r.ready == [] for n, r in poll_all(h).items() if n != main_node)


# --- the main node's end decides --------------------------------------------------------------


def test_main_node_exit_0_succeeds_then_the_others_are_stopped_and_settle(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    nodes = start(h, job_id)
    assert h.status(job_id) == "RUNNING"
    h.clock.advance(5)
    h.exited(nodes[0][0], nodes[0][1].attempt_id, 0)
    detail = h.describe(job_id)
    assert (detail["status"], detail["statusReason"]) == ("SUCCEEDED", EXIT_REASON)
    assert detail["stoppedAt"] == h.clock.now
    assert [a["container"]["exitCode"] for a in detail["attempts"]] == [0]
    assert statuses(h, job_id) == ["SUCCEEDED", "RUNNING", "RUNNING", "RUNNING"]
    replies = poll_all(h)
    assert kills(replies) == {f"n{i}": [f"main node finished: {EXIT_REASON}"] for i in (1, 2, 3)}
    assert [k.attempt_id for k in replies["n2"].kills] == [f"{job_id}#2/1"]
    for i in (1, 2, 3):
        h.exited(nodes[i][0], nodes[i][1].attempt_id, 143, reason="main node finished")
    assert statuses(h, job_id) == ["SUCCEEDED"] * 4
    assert h.status(job_id) == "SUCCEEDED"
    assert free_vcpus(h) == {"n0": 4, "n1": 4, "n2": 4, "n3": 4}
    h.ticks(3)
    assert assignments(poll_all(h)) == {}


def test_a_child_that_finishes_cleanly_waits_for_the_main_node(head: Head) -> None:
    add_nodes(head, 2)
    define(head, every_node=True, num=2)
    job_id = head.submit(jobDefinition="mnp")
    nodes = start(head, job_id)
    head.exited(nodes[1][0], nodes[1][1].attempt_id, 0)
    assert head.status(job_id) == "RUNNING"
    assert kills(poll_all(head)) == {}, "a clean child exit stops nobody"
    assert statuses(head, job_id, 2) == ["RUNNING", "RUNNING"]
    head.exited(nodes[0][0], nodes[0][1].attempt_id, 0)
    assert head.status(job_id) == "SUCCEEDED"
    assert statuses(head, job_id, 2) == ["SUCCEEDED", "SUCCEEDED"]
    assert kills(poll_all(head)) == {}


def test_a_failing_child_stops_the_main_node_and_fails_the_job(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    nodes = start(h, job_id)
    h.exited(nodes[2][0], nodes[2][1].attempt_id, 3)
    why = f"Node {job_id}#2 on n2 ({address(2)}) failed: 3"
    assert h.status(job_id) == "RUNNING", "the main node's end decides"
    replies = poll_all(h)
    assert kills(replies) == {"n0": [why], "n1": [why], "n3": [why]}
    assert [k.attempt_id for k in replies["n0"].kills] == [f"{job_id}#0/1"]
    h.exited(nodes[0][0], nodes[0][1].attempt_id, 143, reason=why)
    detail = h.describe(job_id)
    assert (detail["status"], detail["statusReason"]) == ("FAILED", why)
    assert detail["attempts"][0]["statusReason"] == why
    for i in (1, 3):
        h.exited(nodes[i][0], nodes[i][1].attempt_id, 143)
    assert statuses(h, job_id) == ["FAILED"] * 4
    assert free_vcpus(h) == {"n0": 4, "n1": 4, "n2": 4, "n3": 4}


def test_a_main_node_timeout_fails_the_job_without_retry(head: Head) -> None:
    add_nodes(head, 2)
    define(head, num=2, retryStrategy={"attempts": 3})
    job_id = head.submit(jobDefinition="mnp")
    nodes = start(head, job_id)
    head.exited(nodes[0][0], nodes[0][1].attempt_id, 143, timed_out=True, reason="Timeout")
    assert (head.status(job_id), head.describe(job_id)["statusReason"]) == (
        "FAILED",
        TIMEOUT_REASON,
    )
    head.exited(nodes[1][0], nodes[1][1].attempt_id, 0)
    head.ticks(3)
    assert assignments(poll_all(head)) == {}


# --- retries ----------------------------------------------------------------------------------


def test_a_lost_child_retries_the_job_on_a_fresh_gang_after_every_node_settled(
    head: Head,
) -> None:
    add_nodes(head, 5)
    define(head, retryStrategy={"attempts": 2})
    job_id = head.submit(jobDefinition="mnp")
    nodes = start(head, job_id)
    assert {i: n for i, (n, _) in nodes.items()} == {0: "n0", 1: "n1", 2: "n2", 3: "n3"}
    first_key = nodes[0][1].wiring.authorized_key if nodes[0][1].wiring else None
    assert poll(head, "n0").ready == [Ready(f"{job_id}#0/1")]
    # n2 (node 2) goes silent
    head.clock.advance(LOST_AFTER + 1)
    for n in ("n0", "n1", "n3", "n4"):
        poll(head, n)
    head.scheduler.tick()
    lost = f"Host lost: node n2 ({address(2)}) stopped heartbeating (11.0 s silent)"
    assert head.status(job_id) == "RUNNING"
    replies = poll_all(head)
    assert kills(replies) == {"n0": [lost], "n1": [lost], "n3": [lost]}
    head.exited("n0", nodes[0][1].attempt_id, 143, reason=lost)
    detail = head.describe(job_id)
    assert (detail["status"], detail["statusReason"]) == ("RUNNABLE", lost)
    # nodes 1 and 3 are still stopping: no new gang yet
    head.ticks(2)
    assert assignments(poll_all(head)) == {}
    assert head.status(job_id) == "RUNNABLE"
    head.exited("n1", nodes[1][1].attempt_id, 143)
    head.ticks(2)
    assert assignments(poll_all(head)) == {}
    head.exited("n3", nodes[3][1].attempt_id, 143)
    assert statuses(head, job_id) == ["RUNNABLE"] * 4
    # every node settled: a fresh gang without the lost node, a fresh key, attempt 2
    main_node, main = place(head, job_id)
    assert main.attempt_id == f"{job_id}#0/2"
    assert main.environment["AWS_BATCH_JOB_ATTEMPT"] == "2"
    assert main.wiring is not None
    assert main.wiring.authorized_key != first_key
    assert main.wiring.files["hostfile"] == "n0\nn1\nn3\nn4\n"
    head.started(main_node, main.attempt_id)
    got = assignments(poll_all(head))
    assert {j: (n, a.attempt_id) for j, (n, a) in got.items()} == {
        f"{job_id}#1": ("n1", f"{job_id}#1/2"),
        f"{job_id}#2": ("n3", f"{job_id}#2/2"),
        f"{job_id}#3": ("n4", f"{job_id}#3/2"),
    }
    for node_id, a in got.values():
        head.started(node_id, a.attempt_id)
    assert poll(head, main_node).ready == [Ready(f"{job_id}#0/2")]
    head.exited(main_node, main.attempt_id, 0)
    detail = head.describe(job_id)
    assert detail["status"] == "SUCCEEDED"
    assert [a["statusReason"] for a in detail["attempts"]] == [lost, EXIT_REASON]
    for node_id, a in got.values():
        head.exited(node_id, a.attempt_id, 143)
    assert statuses(head, job_id) == ["SUCCEEDED"] * 4
    assert len(head.describe(f"{job_id}#2")["attempts"]) == 2


# --- terminate and cancel ---------------------------------------------------------------------


def test_terminate_of_a_running_mnp_job_kills_the_main_node_and_fails(four: Head) -> None:
    h = four
    define(h, "mnp3", retryStrategy={"attempts": 3})
    job_id = h.submit(jobDefinition="mnp3")
    nodes = start(h, job_id)
    h.api["terminateJob"]({"jobId": job_id, "reason": HOSTILE})
    assert h.status(job_id) == "RUNNING", "RUNNING until the main node reports its exit"
    replies = poll_all(h)
    assert kills(replies) == {"n0": [HOSTILE]}
    assert [k.attempt_id for k in replies["n0"].kills] == [f"{job_id}#0/1"]
    h.exited("n0", nodes[0][1].attempt_id, 143, reason=HOSTILE)
    detail = h.describe(job_id)
    assert (detail["status"], detail["statusReason"]) == ("FAILED", HOSTILE)
    assert (detail["isTerminated"], len(detail["attempts"])) == (True, 1)
    assert kills(poll_all(h)) == {f"n{i}": [f"main node finished: {HOSTILE}"] for i in (1, 2, 3)}
    for i in (1, 2, 3):
        h.exited(nodes[i][0], nodes[i][1].attempt_id, 143)
    assert statuses(h, job_id) == ["FAILED"] * 4
    h.ticks(3)
    assert assignments(poll_all(h)) == {}, "terminated: not retried"


def test_terminate_of_a_node_job_terminates_the_whole_job(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    nodes = start(h, job_id)
    h.api["terminateJob"]({"jobId": f"{job_id}#2", "reason": "stop"})
    assert kills(poll_all(h)) == {"n0": ["stop"]}
    h.exited("n0", nodes[0][1].attempt_id, 143)
    assert h.describe(job_id)["isTerminated"] is True
    assert h.status(job_id) == "FAILED"


def test_cancel_of_a_runnable_mnp_job_fails_it(four: Head) -> None:
    h = four
    running = h.submit("first", jobDefinition="mnp")
    start(h, running)
    waiting = h.submit("second", jobDefinition="mnp")
    h.ticks(3)
    detail = h.describe(waiting)
    assert detail["status"] == "RUNNABLE"
    assert detail["statusReason"].startswith("CAPACITY:GANG - needs 4 wholly idle nodes")
    h.api["cancelJob"]({"jobId": waiting, "reason": "not now"})
    detail = h.describe(waiting)
    assert (detail["status"], detail["statusReason"]) == ("FAILED", "not now")
    assert detail["isCancelled"] is True
    assert h.api["listJobs"]({"multiNodeJobId": waiting, "allStatuses": True}) == {
        "jobSummaryList": []
    }
    # CancelJob of a RUNNING MNP job does nothing (AWS Batch)
    h.api["cancelJob"]({"jobId": running, "reason": "no"})
    assert kills(poll_all(h)) == {}
    assert h.status(running) == "RUNNING"


def test_cancel_while_waiting_for_a_retry_releases_every_node(four: Head) -> None:
    h = four
    define(h, "mnp2", retryStrategy={"attempts": 2})
    job_id = h.submit(jobDefinition="mnp2")
    nodes = start(h, job_id)
    h.exited("n1", nodes[1][1].attempt_id, 1)
    h.exited("n0", nodes[0][1].attempt_id, 143)
    assert h.status(job_id) == "RUNNABLE"
    h.api["cancelJob"]({"jobId": job_id, "reason": "give up"})
    assert h.status(job_id) == "FAILED"
    for i in (2, 3):  # the nodes still stopping report their exits
        h.exited(nodes[i][0], nodes[i][1].attempt_id, 143)
    assert statuses(h, job_id) == ["FAILED"] * 4
    listed = h.api["listNodes"]({})["nodes"]
    assert {n["nodeId"]: (n["freeVcpus"], n["runningJobs"]) for n in listed} == {
        f"n{i}": (4, []) for i in range(4)
    }


# --- describe and list ------------------------------------------------------------------------


def test_describe_and_list_show_the_parent_and_its_nodes(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = place(h, job_id)
    parent = h.describe(job_id)
    assert parent["nodeProperties"]["numNodes"] == 4
    assert parent["nodeProperties"]["mainNode"] == 0
    targets = [r["targetNodes"] for r in parent["nodeProperties"]["nodeRangeProperties"]]
    assert targets == [":", "0"]
    assert "nodeDetails" not in parent
    for i in range(4):
        node = h.describe(f"{job_id}#{i}")
        assert node["nodeDetails"] == {"nodeIndex": i, "isMainNode": i == 0}
        assert "nodeProperties" not in node
        assert node["container"]["command"] == (MAIN_CMD if i == 0 else [])
    assert h.describe(f"{job_id}#0")["nodeId"] == main_node
    listed = h.api["listJobs"]({"multiNodeJobId": job_id, "jobStatus": "RUNNABLE"})
    assert [s["jobId"] for s in listed["jobSummaryList"]] == [f"{job_id}#{i}" for i in (1, 2, 3)]
    h.started(main_node, main.attempt_id)
    for node_id, a in assignments(poll_all(h)).values():
        h.started(node_id, a.attempt_id)
    listed = h.api["listJobs"]({"multiNodeJobId": job_id})  # RUNNING by default
    summaries = {s["jobId"]: s for s in listed["jobSummaryList"]}
    assert sorted(summaries) == [f"{job_id}#{i}" for i in range(4)]
    for i in range(4):
        assert summaries[f"{job_id}#{i}"]["nodeProperties"] == {
            "numNodes": 4,
            "nodeIndex": i,
            "isMainNode": i == 0,
        }
    queue = h.api["listJobs"]({"jobQueue": "q"})["jobSummaryList"]
    assert job_id in [s["jobId"] for s in queue]


def test_a_gang_larger_than_the_environment_waits_with_a_reason(four: Head) -> None:
    h = four
    define(h, "big", num=5)
    job_id = h.submit(jobDefinition="big")
    h.ticks(3)
    detail = h.describe(job_id)
    assert detail["status"] == "RUNNABLE"
    assert detail["statusReason"] == (
        f"{NEVER_FITS} - needs 5 nodes, the largest compute environment has 4"
    )
    add_nodes(h, 1, first=4)
    main_node, _ = place(h, job_id)
    assert main_node == "n0"


# --- bugs -------------------------------------------------------------------------------------


def test_a_gang_on_nodes_without_ssh_does_not_break_the_tick(head: Head) -> None:
    for n in ("n0", "n1"):
        head.node(n)  # the shared harness registers nodes without SSH
    define(head, num=2)
    job_id = head.submit(jobDefinition="mnp")
    for _ in range(3):
        head.scheduler.tick()
    got = assignments(poll_all(head))
    status = head.status(job_id)
    assert status in ("RUNNABLE", "FAILED") or f"{job_id}#0" in got


def test_unmanaged_nodes_on_other_hosts_are_not_pinned_to_loopback(head: Head) -> None:
    add_nodes(head, 2, addr=lambda i: f"10.1.0.{10 + i}")
    define(head, num=2)
    job_id = head.submit(jobDefinition="mnp")
    _, main = place(head, job_id)
    assert main.environment["MASTER_ADDR"] == "10.1.0.10"
    pinned = {
        k: main.environment.get(k)
        for k in ("MNP_MPI_IFACE", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")
    }
    assert "lo" not in pinned.values(), pinned


@pytest.mark.parametrize(
    ("interfaces", "pinned"),
    [(("eth0", "eth0"), "eth0"), (("eth0", "ens5"), None), (("ib0", None), None)],
)
def test_a_gang_pins_mpi_to_the_interface_its_hosts_report(
    head: Head, interfaces: tuple[str | None, str | None], pinned: str | None
) -> None:
    """Hosts (not local nodes) say which interface holds their address: when all say the
    same, MPI, NCCL and gloo are pinned to it (hydra then connects back by address, not by a
    host name the hosts may not resolve); otherwise nothing is pinned."""
    for i, iface in enumerate(interfaces):
        head.sessions.register(
            Register(f"n{i}", "ce", f"10.1.0.{10 + i}", 4, 4096, 0, 1000 + i, ssh_port=40000 + i,
                     ssh_host_key=HOST_KEY, interface=iface)
        )  # fmt: skip
    define(head, num=2)
    job_id = head.submit(jobDefinition="mnp")
    _, main = place(head, job_id)
    for k in ("MNP_MPI_IFACE", "NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"):
        assert main.environment.get(k) == pinned, (k, main.environment.get(k))
    if pinned is not None:
        assert main.environment["HYDRA_IFACE"] == pinned


def test_a_main_node_exit_without_a_start_still_gives_the_job_a_start_time(four: Head) -> None:
    """The main node's ``exited`` with no ``started`` before it still starts the job (its
    startedAt was left None, and the MNP job's with it)."""
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = place(h, job_id)
    h.clock.advance(2)
    h.exited(main_node, main.attempt_id, 0)
    parent, node0 = h.describe(job_id), h.describe(f"{job_id}#0")
    assert node0["startedAt"] == parent["startedAt"] == h.clock.now


def test_a_restarted_head_keeps_a_running_gang_holding_its_nodes(four: Head) -> None:
    """After a restart every node of a live gang is still wholly held, the node that had not
    confirmed its start gets its assignment again, and the gang's end frees every node."""
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = place(h, job_id)
    h.started(main_node, main.attempt_id)
    others = assignments(poll_all(h))
    for node_id, a in list(others.values())[:2]:
        h.started(node_id, a.attempt_id)
    late_node, late = list(others.values())[2]
    h.close()
    again = Head.open(h.home, clock=h.clock, lost_after_seconds=LOST_AFTER)
    try:
        again.seq, again.runs = dict(h.seq), h.runs  # the agents live on
        assert free_vcpus(again) == {"n0": 0, "n1": 0, "n2": 0, "n3": 0}
        h.clock.advance(3)
        resent = assignments(poll_all(again))
        assert {j: (n, a.attempt_id) for j, (n, a) in resent.items()} == {
            late.job_id: (late_node, late.attempt_id)
        }
        again.started(late_node, late.attempt_id)
        again.exited(main_node, main.attempt_id, 0)
        for node_id, a in others.values():
            again.exited(node_id, a.attempt_id, 143, reason="main node finished")
        assert again.status(job_id) == "SUCCEEDED"
        assert free_vcpus(again) == {"n0": 4, "n1": 4, "n2": 4, "n3": 4}
    finally:
        again.close()


def test_a_restart_while_a_retried_gang_starts_resends_only_its_main_node(head: Head) -> None:
    """An MNP job's own attempts are records of its main node's: a restart must not place
    the job itself again (it sent the job's last attempt to that node as a plain job)."""
    add_nodes(head, 4)
    define(head, retryStrategy={"attempts": 2})
    job_id = head.submit(jobDefinition="mnp")
    nodes = start(head, job_id)
    for i in (1, 2, 3):
        head.exited(nodes[i][0], nodes[i][1].attempt_id, 143, reason="stopped")
    head.exited(nodes[0][0], nodes[0][1].attempt_id, 1)
    assert head.status(job_id) == "RUNNABLE"
    main_node, main = place(head, job_id)
    assert main.attempt_id == f"{job_id}#0/2"
    head.close()
    again = Head.open(head.home, clock=head.clock, lost_after_seconds=LOST_AFTER)
    try:
        again.seq = dict(head.seq)
        head.clock.advance(3)
        resent = assignments(poll_all(again))
        assert {j: (n, a.attempt_id) for j, (n, a) in resent.items()} == {
            main.job_id: (main_node, main.attempt_id)
        }
        assert all(job_id not in again.state.node_rt[n].running for n in again.state.nodes)
    finally:
        again.close()


# --- Ready and teardown delivered at least once (issue 11) ---------------------------------------


def test_a_lost_ready_goes_again_until_the_main_node_reports_it(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    main_node, main = start(h, job_id)[0]
    aid = main.attempt_id
    assert poll(h, main_node).ready == [Ready(aid)]  # this reply is lost
    h.clock.advance(3)
    assert poll(h, main_node).ready == [Ready(aid)], "again: the node does not report it"
    h.clock.advance(3)
    applied = h.sessions.poll(
        Poll(main_node, sorted(h.runs[main_node]), 0.0, [aid], h.epoch(main_node))
    )
    assert applied.ready == []
    h.clock.advance(3)
    assert poll(h, main_node).ready == [], "dropped once the node reported it applied"


def test_a_restarted_head_tells_ready_and_teardown_again(four: Head) -> None:
    h = four
    job_id = h.submit(jobDefinition="mnp")
    nodes = start(h, job_id)
    main_node, main = nodes[0]
    h.close()  # the decided Ready never left the head
    again = Head.open(h.home, clock=h.clock, lost_after_seconds=LOST_AFTER)
    try:
        again.seq, again.runs = dict(h.seq), h.runs
        assert poll(again, main_node).ready == [Ready(main.attempt_id)]
        again.exited(main_node, main.attempt_id, 0)
        killed = kills(poll_all(again))
        again.close()  # the teardown Kills never reached the nodes
        third = Head.open(h.home, clock=h.clock, lost_after_seconds=LOST_AFTER)
        try:
            third.seq, third.runs = dict(again.seq), again.runs
            assert kills(poll_all(third)) == killed
            assert sorted(killed) == sorted(n for i, (n, _) in nodes.items() if i != 0)
        finally:
            third.close()
    finally:
        again.close()
