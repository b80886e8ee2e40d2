"""Submit-once against a real head: a submission whose reply is really lost (a proxy between the
client and the head swallows it after the head has answered) is retried with the same token and
makes one job; the same holds for ``mnp submit``, whose token is fresh per invocation unless
``--idempotency-token`` names one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.client.client import Client
from mnp.config import HeadInfo
from mnp.errors import Conflict
from tests.integration.cluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class LossyProxy:
    """A TCP proxy to the head that loses the replies to the first ``lose`` submitJob requests:
    the head gets the request and answers it, the client gets nothing. ``hold``: the client's
    connection stays open and silent until the client gives up (a timeout); else it is closed
    (a reset). Every other byte is passed through."""

    def __init__(self, target_port: int, lose: int = 1, hold: bool = False) -> None:
        self.target = ("127.0.0.1", target_port)
        self.lose = lose
        self.hold = hold
        self.lost = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            head = socket.create_connection(self.target)
            flag = {"submit": False}
            threading.Thread(target=self._up, args=(client, head, flag), daemon=True).start()
            threading.Thread(target=self._down, args=(head, client, flag), daemon=True).start()

    def _up(self, client: socket.socket, head: socket.socket, flag: dict[str, bool]) -> None:
        """Client → head; notes when a submitJob request goes by (its reply is next)."""
        try:
            while data := client.recv(65536):
                if b"POST /api/v1/submitJob " in data:
                    flag["submit"] = True
                head.sendall(data)
        except OSError:
            pass
        _close(client, head)

    def _down(self, head: socket.socket, client: socket.socket, flag: dict[str, bool]) -> None:
        """Head → client, except the reply to a submitJob while losses remain."""
        try:
            while data := head.recv(65536):
                with self.lock:
                    losing = flag["submit"] and self.lost < self.lose
                    if losing:
                        self.lost += 1
                flag["submit"] = False
                if losing:
                    if self.hold:
                        while client.recv(65536):  # silent until the client hangs up
                            pass
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, head)


def _close(*socks: socket.socket) -> None:
    """Shut down first: a bare close waits for the other thread's blocked recv to return."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("once") / "home", nodes=1) as c:
        c.register("once-def", ["true"])
        yield c


def token_of(c: Cluster) -> str:
    info = HeadInfo.read(c.home / "head.json")
    assert info is not None and info.token
    return info.token


def jobs_named(c: Cluster, name: str) -> list[str]:
    return [j["jobId"] for j in c.client.list_jobs(name=name)]


def request(name: str) -> dict[str, object]:
    return {"jobName": name, "jobQueue": "default", "jobDefinition": "once-def"}


@pytest.mark.parametrize("hold", [False, True], ids=["reset", "timeout"])
def test_a_client_retry_after_a_lost_reply_makes_one_job(head: Cluster, hold: bool) -> None:
    name = f"lost-{'timeout' if hold else 'reset'}"
    proxy = LossyProxy(head.port, lose=1, hold=hold)
    try:
        with Client(url=proxy.url, token=token_of(head), home=head.home, timeout=1.0) as client:
            job_id = client.submit(request(name))
        assert proxy.lost == 1, "the proxy lost no reply: the test proves nothing"
    finally:
        proxy.close()
    assert jobs_named(head, name) == [job_id]


def test_the_same_token_sent_twice_is_one_job_and_another_body_conflicts(head: Cluster) -> None:
    token = f"t-{uuid.uuid4()}"
    first = head.client.submit(request("twice"), idempotency_token=token)
    assert head.client.submit(request("twice"), idempotency_token=token) == first
    with pytest.raises(Conflict, match=r"mnp\.idempotencyToken"):
        head.client.submit(request("twice-other"), idempotency_token=token)
    assert jobs_named(head, "twice") == [first]
    assert jobs_named(head, "twice-other") == []


def mnp(url: str, c: Cluster, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MNP_TOKEN": token_of(c)}
    return subprocess.run(
        [sys.executable, "-m", "mnp", "--home", str(c.home), "--url", url, *args],
        input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip


def test_mnp_submit_sends_a_token_so_its_own_retry_makes_one_job(head: Cluster) -> None:
    proxy = LossyProxy(head.port, lose=1)
    try:
        r = mnp(proxy.url, head, "submit", "-", stdin=json.dumps(request("cli-lost")))
        assert r.returncode == 0, r.stderr
        assert proxy.lost == 1
    finally:
        proxy.close()
    assert jobs_named(head, "cli-lost") == [r.stdout.strip()]


def test_mnp_submit_with_an_idempotency_token_reruns_into_the_same_job(head: Cluster) -> None:
    token = f"cli-{uuid.uuid4()}"
    argv = ("submit", "-", "--idempotency-token", token)
    runs = [mnp(head.url, head, *argv, stdin=json.dumps(request("cli-rerun"))) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout
    assert jobs_named(head, "cli-rerun") == [runs[0].stdout.strip()]
    bad = mnp(head.url, head, "submit", "-", "--idempotency-token", "x" * 65,
              stdin=json.dumps(request("cli-bad")))  # fmt: skip
    assert bad.returncode != 0 and "mnp.idempotencyToken" in bad.stderr
