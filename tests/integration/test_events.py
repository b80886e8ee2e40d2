"""Events from a real head: a webhook gets each state change of a job once, in order, signed,
in EventBridge's shape; a receiver failing its first tries gets the event on a later one;
an event not yet delivered when the head dies is delivered by the next head; a command
subscribed to a topic gets a failed job's event on stdin; the tail shows users their own."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mnp.client.client import Client
from mnp.errors import AccessDenied
from mnp.service.events.delivery import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.integration.cluster import Cluster, free_port, wait_for

pytestmark = pytest.mark.integration

SECRET = "hook-secret"


class Receiver:
    """A webhook on 127.0.0.1 (http.server in a thread): keeps every POST; answers 500 to
    the first ``fail`` of them."""

    def __init__(self, port: int = 0, fail: int = 0) -> None:
        self.posts: list[tuple[dict[str, str], bytes, float]] = []
        self.fail = fail
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.posts.append((dict(self.headers.items()), body, time.monotonic()))
                failing = len(receiver.posts) <= receiver.fail
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body, _ in self.posts]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path / "home", nodes=1) as c:
        yield c


def _rule(c: Cluster, name: str, pattern: dict[str, Any], **target: str) -> None:
    c.client.call("putEventRule", {"name": name, "pattern": pattern, "targets": [target]})


def _statuses(events: list[dict[str, Any]], job_id: str) -> list[str]:
    return [e["detail"]["status"] for e in events if e["detail"]["jobId"] == job_id]


def test_a_webhook_gets_each_change_once_in_order_signed(
    cluster: Cluster, receiver: Receiver
) -> None:
    c = cluster
    _rule(c, "all", {"source": ["aws.batch"]}, webhook=receiver.url, secret=SECRET)
    job_id = c.submit("hello", c.register("hello", ["echo", "hi"]))
    final = c.wait_status(job_id, "SUCCEEDED")
    expected = [h["status"] for h in final["history"]][1:]  # no event for the submission
    assert expected == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"]
    wait_for("every event", lambda: _statuses(receiver.events(), job_id) == expected)
    time.sleep(0.3)  # nothing more comes (no duplicates)
    assert _statuses(receiver.events(), job_id) == expected
    ids = set()
    for headers, body, _ in receiver.posts:
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])
        assert headers["Content-Type"] == "application/json"
        ids.add(headers[EVENT_ID_HEADER])
    assert len(ids) == len(expected)
    last = receiver.events()[-1]
    assert last["detail-type"] == "Batch Job State Change" and last["source"] == "aws.batch"
    assert last["version"] == "0" and last["id"] in ids
    assert last["resources"] == [last["detail"]["jobArn"]]
    assert last["account"] == "000000000000" and last["region"] == "local"
    detail = last["detail"]
    # DescribeJobs on the AWS wire: its fields, none of mnp's own
    assert detail["jobId"] == job_id and detail["jobName"] == "hello"
    assert detail["jobQueue"] == final["jobQueue"]
    assert detail["attempts"][0]["container"]["exitCode"] == 0
    assert "history" not in detail and "jobQueueName" not in detail
    assert detail["parameters"] == {} and detail["eksAttempts"] == []
    # the tail's buffer has the same events
    lines = list(c.client.stream_lines("events", "/api/v1/events",
                                       {"after": "0", "job": job_id}, False))  # fmt: skip
    assert [json.loads(line)["event"]["detail"]["status"] for line in lines] == expected


def test_a_failing_receiver_gets_the_event_on_its_third_try(cluster: Cluster) -> None:
    c = cluster
    r = Receiver(fail=2)
    try:
        _rule(c, "done", {"detail": {"status": ["SUCCEEDED"]}}, webhook=r.url, secret=SECRET)
        job_id = c.submit("ok", c.register("ok", ["true"]))
        c.wait_status(job_id, "SUCCEEDED")
        wait_for("three tries", lambda: len(r.posts) >= 3)
        time.sleep(0.3)
        assert len(r.posts) == 3
        assert len({h[EVENT_ID_HEADER] for h, _, _ in r.posts}) == 1  # the same event
        (_, _, t1), (_, _, t2), (_, _, t3) = r.posts
        assert t2 - t1 >= 0.9 and t3 - t2 >= 1.9  # backoff: 1 s, then 2 s
        assert _statuses(r.events(), job_id) == ["SUCCEEDED"] * 3
        assert c.client.call("listDeadLetters", {})["deadLetters"] == []
    finally:
        r.close()


def test_an_undelivered_event_is_delivered_after_a_head_restart(cluster: Cluster) -> None:
    c = cluster
    port = free_port()  # nothing listens there yet
    url = f"http://127.0.0.1:{port}/hook"
    _rule(c, "done", {"detail": {"status": ["SUCCEEDED"]}}, webhook=url)
    job_id = c.submit("ok", c.register("ok", ["true"]))
    c.wait_status(job_id, "SUCCEEDED")

    def pending() -> bool:
        text = c.client._http.get("/metrics").text  # the owner's token is on the client
        return "mnp_event_deliveries_pending 1.0" in text

    wait_for("the event to wait for its receiver", pending)
    c.kill9()
    r = Receiver(port=port)
    try:
        c.restart()
        wait_for("the event after the restart", lambda: _statuses(r.events(), job_id),
                 timeout=30)  # fmt: skip
        assert _statuses(r.events(), job_id) == ["SUCCEEDED"]
    finally:
        r.close()


def test_a_command_subscriber_gets_a_failed_jobs_event_on_stdin(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    out = tmp_path / "got"
    out.mkdir()
    c.client.call("createEventTopic", {"name": "failures"})
    c.client.call("subscribeEventTopic",
                  {"topic": "failures", "command": f"cat > {out}/$MNP_EVENT_ID.json"})  # fmt: skip
    _rule(c, "failed", {"detail": {"status": ["FAILED"]}}, topic="failures")
    ok = c.submit("ok", c.register("ok", ["true"]))
    bad = c.submit("bad", c.register("bad", ["sh", "-c", "exit 3"]))
    c.wait_status(ok, "SUCCEEDED")
    c.wait_status(bad, "FAILED")
    def written() -> list[Path] | None:  # `cat >` makes the file before it has written it
        files = list(out.glob("*.json"))
        try:
            return files if files and all(json.loads(f.read_text()) for f in files) else None
        except ValueError:
            return None

    files = wait_for("the command's output", written)
    [got] = [json.loads(f.read_text()) for f in files]
    assert got["detail"]["jobId"] == bad and got["detail"]["status"] == "FAILED"
    assert files[0].name == f"{got['id']}.json"
    assert got["detail"]["attempts"][-1]["container"]["exitCode"] == 3


def test_rules_and_topics_are_for_admins_and_the_tail_is_per_user(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    made = c.client.create_user("evuser")
    user = Client(url=c.url, token=made["token"], home=tmp_path, timeout=10)
    try:
        with pytest.raises(AccessDenied):
            user.call("putEventRule", {"name": "x", "targets": [{"webhook": "http://h/"}]})
        with pytest.raises(AccessDenied):
            user.call("listDeadLetters", {})
        followed = user.stream_lines("events", "/api/v1/events", {"follow": "1"}, True)
        definition = c.register("mine", ["true"])
        theirs = c.submit("theirs", definition)  # the owner's job
        mine = user.submit({"jobName": "mine", "jobQueue": "default",
                            "jobDefinition": definition})  # fmt: skip
        seen: list[dict[str, Any]] = []

        def read_until_done() -> None:
            for line in followed:
                seen.append(json.loads(line)["event"])
                if seen[-1]["detail"]["status"] in ("SUCCEEDED", "FAILED"):
                    return

        reader = threading.Thread(target=read_until_done, daemon=True)
        reader.start()
        c.wait_status(theirs, "SUCCEEDED")
        c.wait_status(mine, "SUCCEEDED", "FAILED")  # as its account, if this machine has one
        reader.join(20)
        assert not reader.is_alive()
        assert seen and {e["detail"]["jobId"] for e in seen} == {mine}
    finally:
        followed.close()
        user.close()


def test_the_cli_manages_rules_and_topics_and_tails(cluster: Cluster, receiver: Receiver) -> None:
    c = cluster

    def mnp(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mnp", "--home", str(c.home), *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    mnp("events", "topics", "create", "ops")
    sub = mnp("events", "topics", "subscribe", "ops", "--webhook", receiver.url).strip()
    mnp("events", "rules", "create", "done", "--status", "succeeded", "--queue", "default",
        "--topic", "ops", "--webhook", receiver.url, "--secret", SECRET)  # fmt: skip
    [rule] = json.loads(mnp("events", "rules", "list", "--json"))
    assert rule["pattern"]["detail"] == {"jobQueue": [{"suffix": ":job-queue/default"}],
                                         "status": ["SUCCEEDED"]}  # fmt: skip
    assert {t["kind"] for t in rule["targets"]} == {"topic", "webhook"}
    assert "secret" not in json.dumps(rule) and SECRET not in json.dumps(rule)
    job_id = c.submit("ok", c.register("ok", ["true"]))
    c.wait_status(job_id, "SUCCEEDED")
    wait_for("the rule's and the topic's deliveries", lambda: len(receiver.posts) == 2)
    brief = mnp("events", "tail", "--no-follow", "--brief", "--job", job_id).splitlines()
    assert [line.split("\t")[3] for line in brief] == ["RUNNABLE", "STARTING", "RUNNING",
                                                       "SUCCEEDED"]  # fmt: skip
    assert mnp("events", "dead-letters").strip() == ""
    assert sub in mnp("events", "topics", "list")
    mnp("events", "rules", "delete", "done")
    mnp("events", "topics", "unsubscribe", "ops", sub)
    mnp("events", "topics", "delete", "ops")
    assert json.loads(mnp("events", "rules", "list", "--json")) == []
