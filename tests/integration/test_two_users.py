"""Two users on one head, end to end (issue 11): neither reads the other's logs, keys or files.

A real head running as root (tests/integration/cluster.py) with real local nodes, whose root
agents run each job as its submitter; two real Unix accounts (tests/unit/run_as_accounts.py),
each made an mnp user by root's real ``mnp users add`` (which writes ``~user/.mnp/client.json``
and the AWS key), each submitting with their own token. While ``mnpt-alice``'s jobs run (a
plain one holding a secret in its workdir, its output and its environment, and a 2-node
Open MPI job whose gang key is on its nodes), ``mnpt-bob``'s job tries to read all of it and
the head's own files; bob's token tries her logs (both doors), terminate and cancel.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from mnp.client.client import Client
from mnp.errors import AccessDenied
from tests.integration.cluster import Cluster, wait_for
from tests.integration.test_multinode import mnp_definition, settled
from tests.unit.run_as_accounts import made_accounts, reachable_dir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("mpirun") is None or not os.path.exists("/usr/bin/orted"),
        reason="needs Debian's Open MPI (mpirun, orted)",
    ),
]

ALICE, BOB = "mnpt-alice", "mnpt-bob"
SECRET = "alice-secret-7f3a9c"
NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=30)

# alice's plain job: the secret (given in its environment only) in a file of her workdir
# and in her output, then wait
PLAIN = 'id -un; echo "$ALICE_TOKEN" > secret.txt; echo "$ALICE_TOKEN"; ' \
        'while [ ! -e "$GO" ]; do sleep 0.05; done'  # fmt: skip
# each rank of her MPI job: who it runs as, then wait (so the gang key stays on the nodes)
RANK = 'echo "rank=$OMPI_COMM_WORLD_RANK user=$(id -un)"; while [ ! -e "$GO" ]; do sleep 0.05; done'
# bob's job: try each path (list a folder, read a file); count what succeeded
PROBE = """
import os, subprocess, sys
print("whoami=" + subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip())
got = 0
for p in sys.argv[1:]:
    try:
        if os.path.isdir(p):
            os.listdir(p)
        else:
            open(p, "rb").read(1)
        got += 1
        print("READ", p)
    except OSError as e:
        print("REFUSED", p, type(e).__name__, e.strerror)
print("successes=%d" % got)
"""


@dataclass
class Users:
    """The head, its owner's client, and each user's native client and AWS key."""

    cluster: Cluster
    base: Path
    native: dict[str, Client]
    aws: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def users() -> Iterator[Users]:
    # everything under one 0711 folder in /tmp: the accounts can pass through it to the home
    # (itself 0711) and their own homes, never list it; removed after, also on failure
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(reachable_dir())
        accounts = stack.enter_context(made_accounts(base / "homes"))
        c = stack.enter_context(Cluster(base / "home", nodes=3, vcpus=2))
        aws: dict[str, dict[str, str]] = {}
        native: dict[str, Client] = {}
        for name in (ALICE, BOB):
            argv = [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", c.url]
            made = json.loads(
                subprocess.run(
                    [*argv, "users", "add", name, "--json"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            client_dir = Path(accounts[name].pw_dir) / ".mnp"
            assert str(client_dir / "client.json") in made["written"], made
            native[name] = stack.enter_context(contextlib.closing(Client(home=client_dir)))
            aws[name] = made
        yield Users(c, base, native, aws)


def boto(u: Users, name: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=u.cluster.url,
        region_name="us-east-1",
        aws_access_key_id=u.aws[name]["awsAccessKeyId"],
        aws_secret_access_key=u.aws[name]["awsSecretAccessKey"],
        config=NO_RETRIES,
    )


def denied(call: Any) -> int:
    """The HTTP status of a boto3 call that must be refused (AccessDeniedException)."""
    with pytest.raises(ClientError) as e:
        call()
    assert e.value.response["Error"]["Code"] == "AccessDeniedException", e.value.response
    return int(e.value.response["ResponseMetadata"]["HTTPStatusCode"])


def attempt_dir(home: Path, job_id: str) -> Path:
    """The first attempt's directory of ``job_id`` on whichever node ran it."""
    safe = job_id.replace("#", "_")
    return wait_for(
        f"the attempt directory of {job_id}",
        lambda: next(iter((home / "nodes").glob(f"*/jobs/{safe}.1")), None),
    )


def test_neither_user_reads_the_others_logs_keys_or_files(users: Users) -> None:
    c, home, go = users.cluster, users.cluster.home, users.base / "go"
    alice, bob = users.native[ALICE], users.native[BOB]
    assert (alice.whoami()["name"], bob.whoami()["name"]) == (ALICE, BOB)
    container = {"environment": [{"name": "GO", "value": str(go)}]}
    c.register("plain", ["sh", "-c", PLAIN], container=container)
    mnp_definition(
        c, "gang", ["sh", "-c", RANK], nodes=2, mpi="openmpi", tasks=1, env={"GO": str(go)}
    )
    secret_env = {"environment": [{"name": "ALICE_TOKEN", "value": SECRET}]}
    plain = alice.submit(
        {"jobName": "p", "jobQueue": "default", "jobDefinition": "plain",
         "containerOverrides": secret_env}
    )  # fmt: skip
    gang = alice.submit({"jobName": "g", "jobQueue": "default", "jobDefinition": "gang"})

    # her secret reached her output on the head; her gang's key is on its main node
    wait_for("alice's output", lambda: SECRET in c.logs(plain))
    main = c.wait_status(f"{gang}#0", "RUNNING", "SUCCEEDED", "FAILED")
    assert main["status"] == "RUNNING", (main, c.logs(f"{gang}#0"))
    key = attempt_dir(home, f"{gang}#0") / ".mnp" / "id_ed25519"
    wait_for("the gang's ranks to run", lambda: c.logs(f"{gang}#0").count("rank=") == 2)
    mine = attempt_dir(home, plain)
    node_root = mine.parents[1]
    # the head's copies of her jobs' output
    head_logs = [home / "logs" / job / "1" / "stdout.log" for job in (plain, f"{gang}_0")]
    assert key.exists() and (mine / "secret.txt").exists()
    assert all(p.exists() for p in head_logs), list((home / "logs").rglob("*"))
    targets = [
        mine, mine / "secret.txt", mine / "stdout.log", mine / "stderr.log", key,
        key.parent, key.parent / "hostfile", node_root / "jobs", node_root,
        node_root / "agent.log", node_root / "node.secret", node_root / "tmp",
        home, home / "nodes", home / "logs", home / "token", home / "mnp.sqlite3",
        home / "credentials", home / "head.json", *head_logs,
    ]  # fmt: skip
    # each is there (a refusal must be the mode's doing, not a missing file)
    assert [t for t in targets if not t.exists()] == []
    c.register("probe", ["/usr/bin/python3", "-c", PROBE, *map(str, targets)])
    probe = bob.submit({"jobName": "b", "jobQueue": "default", "jobDefinition": "probe"})
    done = c.wait_status(probe, "SUCCEEDED", "FAILED")
    seen = "".join(bob.logs(probe))  # his own: allowed
    assert done["status"] == "SUCCEEDED", (done, seen)
    print(seen)
    assert f"whoami={BOB}" in seen, seen
    assert re.findall(r"^READ .*", seen, re.M) == [] and "successes=0" in seen, seen
    assert seen.count("REFUSED ") == len(targets), seen

    # bob's token against her job: logs on both doors, terminate and cancel → 403
    with pytest.raises(AccessDenied, match=f"{BOB} may not read the logs"):
        list(bob.logs(plain))
    stream = c.client.describe(plain)["container"]["logStreamName"]
    logs = boto(users, BOB, "logs")
    group = "/aws/batch/job"
    assert denied(lambda: logs.get_log_events(logGroupName=group, logStreamName=stream)) == 403
    batch = boto(users, BOB, "batch")
    assert denied(lambda: batch.terminate_job(jobId=plain, reason="bob")) == 403
    assert denied(lambda: batch.cancel_job(jobId=plain, reason="bob")) == 403
    for call in (bob.terminate, bob.cancel):
        with pytest.raises(AccessDenied):
            call(plain, "bob")
    seen_by_bob = bob.describe(plain)
    assert seen_by_bob["status"] == "RUNNING" and seen_by_bob["submittedBy"] == ALICE
    env = {e["name"]: e["value"] for e in seen_by_bob["container"]["environment"]}
    assert env["ALICE_TOKEN"] != SECRET and SECRET not in json.dumps(seen_by_bob), env
    assert c.client.describe(f"{gang}#0")["status"] == "RUNNING"

    # let alice's jobs end: each ran as her, on every node of the gang
    go.touch()
    for job in (plain, gang):
        d = c.wait_status(job, "SUCCEEDED", "FAILED")
        assert d["status"] == "SUCCEEDED", (d, c.logs(job))
    assert "".join(alice.logs(plain)).splitlines()[:2] == [ALICE, SECRET]
    settled(c, gang, 2)
    ranks = sorted(re.findall(r"rank=(\d) user=(\S+)", "".join(alice.logs(f"{gang}#0"))))
    assert ranks == [("0", ALICE), ("1", ALICE)]
