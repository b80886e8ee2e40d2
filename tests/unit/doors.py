"""The head node's real HTTP app on a temp store, in-process, with a caller for each door.

:class:`Doors` builds :class:`mnp.head.Head` exactly as ``mnp up`` does (no local nodes: an
UNMANAGED environment ``ce`` and its queue ``default`` instead, so a test plays the agent)
and sends requests through Starlette's test client: the native API (token header), the AWS
Batch wire and CloudWatch Logs (SigV4-signed by botocore with the head's own key), and the
agent endpoints. Raw bodies go as given, so a test can send what no client would.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, cast

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

with warnings.catch_warnings():  # Starlette would rather have httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mnp.api.app import build_app
from mnp.api.aws.credentials import ensure_credentials
from mnp.config import HeadConfig
from mnp.head import Head
from mnp.spec import protocol

TOKEN = "test-token"
HOST = "http://testserver"
Body = bytes | dict[str, Any]


def raw(body: Body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


class Doors:
    def __init__(self, home: Path) -> None:
        config = HeadConfig(home=home, local=None, token=TOKEN, min_timeout_seconds=1.0)
        self.head = Head(config, HOST)
        self.head.start()
        self.key = ensure_credentials(home)
        self.http = TestClient(build_app(self.head, self.head.ops), raise_server_exceptions=False)
        self.secrets: dict[str, str] = {}
        """Each node's secret, from its register reply (sent on its later agent calls)."""
        self.native(
            "createComputeEnvironment",
            {"computeEnvironmentName": "ce", "type": "UNMANAGED", "mnp": {"nodes": 0}},
        ).raise_for_status()
        self.native(
            "createJobQueue",
            {
                "jobQueueName": "default",
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": "ce"}],
            },
        ).raise_for_status()

    @property
    def _token(self) -> dict[str, str]:
        return {protocol.TOKEN_HEADER: TOKEN}

    def close(self) -> None:
        self.http.close()
        self.head.store.close()

    def native(self, op: str, body: Body) -> httpx.Response:
        r = self.http.post(f"/api/v1/{op}", content=raw(body), headers=self._token)
        return cast(httpx.Response, r)

    def _signed(
        self, method: str, path: str, body: bytes, service: str, headers: dict[str, str]
    ) -> httpx.Response:
        request = AWSRequest(method=method, url=HOST + path, data=body, headers=headers)
        creds = BotoCredentials(self.key.access_key_id, self.key.secret_access_key)
        SigV4Auth(creds, service, "us-east-1").add_auth(request)
        sent = {k: str(v) for k, v in request.headers.items()}
        return cast(httpx.Response, self.http.request(method, path, content=body, headers=sent))

    def aws(self, op: str, body: Body, method: str = "POST") -> httpx.Response:
        """``op`` is the path after ``/v1/`` (``submitjob``, ``tags/<quoted arn>``)."""
        return self._signed(
            method, f"/v1/{op}", raw(body), "batch", {"Content-Type": "application/json"}
        )

    def logs(self, op: str, body: Body) -> httpx.Response:
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"Logs_20140328.{op}",
        }
        return self._signed("POST", "/", raw(body), "logs", headers)

    def agent(self, path: str, body: Body) -> httpx.Response:
        """An agent call with the head's token and, once the node has one, its secret."""
        node_id = body.get("nodeId") if isinstance(body, dict) else None
        headers = dict(self._token)
        if isinstance(node_id, str) and node_id in self.secrets:
            headers[protocol.NODE_SECRET_HEADER] = self.secrets[node_id]
        r = cast(httpx.Response, self.http.post(path, content=raw(body), headers=headers))
        if path == protocol.REGISTER_PATH and r.status_code == 200 and isinstance(node_id, str):
            self.secrets[node_id] = r.json().get(protocol.NODE_SECRET_KEY) or self.secrets[node_id]
        return r

    def tail(self, job_id: str, query: str = "") -> httpx.Response:
        return cast(
            httpx.Response, self.http.get(f"/api/v1/logs/{job_id}{query}", headers=self._token)
        )

    # --- a node played by the test --------------------------------------------------------
    def register(self, node_id: str = "n1") -> httpx.Response:
        body = protocol.Register(node_id, "ce", "127.0.0.9", 4, 4096, 0, 1).to_wire()
        return self.agent(protocol.REGISTER_PATH, body)

    def poll(self, node_id: str = "n1") -> httpx.Response:
        body = protocol.Poll(node_id, [], 0, epoch=self._epoch(node_id)).to_wire()
        return self.agent(protocol.POLL_PATH, body)

    def report(self, events: list[protocol.Event], node_id: str = "n1") -> httpx.Response:
        body = protocol.Report(node_id, events, self._epoch(node_id)).to_wire()
        return self.agent(protocol.REPORT_PATH, body)

    def _epoch(self, node_id: str) -> int:
        node = self.head.state.nodes.get(node_id)
        return node.session_epoch if node is not None else 0

    def tick(self) -> None:
        self.head.scheduler.tick()
