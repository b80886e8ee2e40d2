"""SigV4 verification against requests signed by botocore's own signer; refusals; the
SubmitJob token bucket; the front door behind a real HTTP server with boto3; credentials;
``mnp env``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
import uvicorn
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mnp.api.aws.credentials import (
    Credentials,
    CredentialsError,
    CredentialStore,
    ensure_credentials,
    parse,
    write_file,
)
from mnp.api.aws.frontdoor import AwsAuthMiddleware, FrontDoor, TokenBucket
from mnp.api.aws.sigv4 import MISMATCH, MISSING, UNRECOGNIZED, AuthError, Identity, verify
from mnp.cli.env import env_lines
from mnp.cli.main import cli
from mnp.service.users import Caller, Role, owner
from tests.integration.cluster import free_port, wait_for

KEY = Credentials("MNPTESTKEY0000000001", "s3cr3t/with+odd=chars")
KEYS = {KEY.access_key_id: KEY}
T0 = datetime(2024, 5, 17, 12, 0, 0, tzinfo=UTC)
ENDPOINT = "http://127.0.0.1:8750"
HOSTILE_SECRET = "it's \"q\" $HOME `id`; rm -rf / \\ *\ttab"


# --- requests signed by botocore ---------------------------------------------------------
@dataclass
class Signed:
    """A request as the server sees it: raw path and query, headers (Host added as urllib3
    adds it), body."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def verify(self, now: datetime = T0, service: str = "batch", **kw: Any) -> Identity | AuthError:
        keys = kw.pop("keys", KEYS)
        return verify(
            self.method, self.path, self.query, self.headers, self.body, keys, now,
            service=service, **kw,
        )  # fmt: skip

    def with_header(self, name: str, value: str | None) -> Signed:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return Signed(
            self.method, self.path, self.query, kept + ([(name, value)] if value else []), self.body
        )


def sign(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    service: str = "batch",
    region: str = "us-east-1",
    key: Credentials = KEY,
    at: datetime = T0,
) -> Signed:
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        SigV4Auth(
            BotoCredentials(key.access_key_id, key.secret_access_key), service, region
        ).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    sent = [
        (k, v.decode() if isinstance(v, bytes) else str(v)) for k, v in prepared.headers.items()
    ]
    sent.append(("Host", parts.netloc))
    raw_body = prepared.body or b""
    return Signed(
        method,
        parts.path,
        parts.query,
        sent,
        raw_body.encode() if isinstance(raw_body, str) else raw_body,
    )


TAG_ARN = "arn%3Aaws%3Abatch%3Aus-east-1%3A12345678%3Ajob-queue%2Fq%201"


@pytest.mark.parametrize(
    ("method", "url", "body", "params"),
    [
        ("POST", f"{ENDPOINT}/v1/submitjob", b'{"jobName": "j", "jobQueue": "q"}', None),
        ("POST", f"{ENDPOINT}/v1/describejobs", b"", None),
        ("GET", f"{ENDPOINT}/v1/tags/{TAG_ARN}", b"", None),
        ("POST", f"{ENDPOINT}/v1/tags/{TAG_ARN}", b'{"tags": {"a": "b"}}', None),
        ("DELETE", f"{ENDPOINT}/v1/tags/{TAG_ARN}?tagKeys=a&tagKeys=b%20c&tagKeys=%C3%A9", b"", {}),
        ("GET", f"{ENDPOINT}/v1/tags/arn%3Aaws%3Abatch%3Ax%3A1%3Ajob%2Fa~b%2B%25", b"", None),
        ("GET", f"{ENDPOINT}/v1/x/./y/../z//w", b"", {"b": "x y", "a": "1/2", "c": "p+q"}),
        ("GET", "http://localhost/v1/listjobs?z=1&a=2&a=1&empty=", b"", None),
    ],
)
def test_botocore_signed_requests_verify(
    method: str, url: str, body: bytes, params: dict[str, str] | None
) -> None:
    signed = sign(method, url, body, params=params, headers={"Content-Type": "application/json"})
    assert signed.verify() == Identity(KEY.access_key_id, "default", "us-east-1", "batch")


def test_botocore_signed_logs_request_verifies_with_any_region() -> None:
    signed = sign(
        "POST",
        f"{ENDPOINT}/",
        b'{"logGroupName": "/aws/batch/job"}',
        headers={
            "X-Amz-Target": "Logs_20140328.GetLogEvents",
            "Content-Type": "application/x-amz-json-1.1",
        },
        service="logs",
        region="eu-west-3",
    )
    assert signed.verify(service="logs") == Identity(
        KEY.access_key_id, "default", "eu-west-3", "logs"
    )
    refused = signed.verify(service="batch")
    assert isinstance(refused, AuthError)
    assert (refused.status, refused.code) == (403, "InvalidSignatureException")
    assert "scoped to correct service: 'batch'" in refused.message


def test_signed_payload_header_and_collapsed_header_whitespace() -> None:
    body = b'{"a": 1}'
    signed = sign(
        "POST",
        f"{ENDPOINT}/v1/submitjob",
        body,
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD", "X-Custom": "  a   b  "},
    )
    assert isinstance(signed.verify(), Identity)
    assert isinstance(signed.with_header("X-Custom", "a b").verify(), Identity)
    hashed = sign(
        "POST",
        f"{ENDPOINT}/v1/submitjob",
        body,
        headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()},
    )
    assert isinstance(hashed.verify(), Identity)
    tampered = Signed(hashed.method, hashed.path, hashed.query, hashed.headers, b'{"a": 2}')
    refused = tampered.verify()
    assert isinstance(refused, AuthError) and "x-amz-content-sha256" in refused.message


# --- refusals ----------------------------------------------------------------------------
def refusal(result: Identity | AuthError) -> tuple[int, str]:
    assert isinstance(result, AuthError), result
    return result.status, result.code


SUBMIT = sign("POST", f"{ENDPOINT}/v1/submitjob", b'{"jobName": "j"}')


def test_missing_authorization_is_403_missing_token() -> None:
    result = SUBMIT.with_header("Authorization", None).verify()
    assert result == MISSING
    assert refusal(result) == (403, "MissingAuthenticationTokenException")
    assert MISSING.message == "Missing Authentication Token"


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 Credential=MNPTESTKEY0000000001/20240517/us-east-1/batch/aws4_request",
        "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abc",
        "AWS4-HMAC-SHA256 Credential=MNPTESTKEY0000000001/20240517/batch/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc",
        "AWS4-HMAC-SHA512 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=abc",
        "Bearer abc",
    ],
)
def test_malformed_authorization_is_400_incomplete_signature(authorization: str) -> None:
    assert refusal(SUBMIT.with_header("Authorization", authorization).verify()) == (
        400,
        "IncompleteSignatureException",
    )


def test_missing_date_is_incomplete_signature() -> None:
    result = SUBMIT.with_header("X-Amz-Date", None).verify()
    assert refusal(result) == (400, "IncompleteSignatureException")
    assert isinstance(result, AuthError) and "'X-Amz-Date' or a 'Date'" in result.message


def test_unknown_key_is_403_unrecognized_client() -> None:
    other = sign("POST", f"{ENDPOINT}/v1/submitjob", b"{}", key=Credentials("MNPNOSUCHKEY", "x"))
    result = other.verify()
    assert result == UNRECOGNIZED
    assert result.message == "The security token included in the request is invalid."


@pytest.mark.parametrize(
    "tamper",
    ["secret", "body", "path", "query", "method", "signed-header", "date"],
)
def test_wrong_signature_is_403_invalid_signature(tamper: str) -> None:
    s = sign("POST", f"{ENDPOINT}/v1/tags/{TAG_ARN}?tagKeys=a", b'{"tags": {}}',
             headers={"Content-Type": "application/json"})  # fmt: skip
    if tamper == "secret":
        s = sign("POST", f"{ENDPOINT}/v1/submitjob", key=Credentials(KEY.access_key_id, "wrong"))
    elif tamper == "body":
        s = Signed(s.method, s.path, s.query, s.headers, b'{"tags": {"x": "y"}}')
    elif tamper == "path":
        s = Signed(s.method, s.path.replace("q%201", "q%202"), s.query, s.headers, s.body)
    elif tamper == "query":
        s = Signed(s.method, s.path, "tagKeys=b", s.headers, s.body)
    elif tamper == "method":
        s = Signed("DELETE", s.path, s.query, s.headers, s.body)
    elif tamper == "signed-header":
        s = s.with_header("Content-Type", "text/plain")
    elif tamper == "date":
        s = s.with_header("X-Amz-Date", "20240517T120001Z")
    result = s.verify()
    assert refusal(result) == (403, "InvalidSignatureException")
    assert isinstance(result, AuthError) and result.message.startswith(MISMATCH)


def test_clock_skew_of_up_to_15_minutes_is_accepted() -> None:
    for skew in (timedelta(minutes=-15), timedelta(0), timedelta(minutes=14, seconds=59)):
        assert isinstance(SUBMIT.verify(now=T0 + skew), Identity)


def test_expired_and_future_signatures_are_refused() -> None:
    expired = SUBMIT.verify(now=T0 + timedelta(minutes=16))
    assert refusal(expired) == (403, "InvalidSignatureException")
    assert isinstance(expired, AuthError)
    assert expired.message == (
        "Signature expired: 20240517T120000Z is now earlier than 20240517T120100Z "
        "(20240517T121600Z - 15 min.)"
    )
    future = SUBMIT.verify(now=T0 - timedelta(minutes=16))
    assert isinstance(future, AuthError) and future.message.startswith("Signature not yet current")


def test_scope_date_must_match_the_request_date() -> None:
    result = sign("POST", f"{ENDPOINT}/v1/submitjob").with_header("X-Amz-Date", "20240518T000000Z")
    outcome = result.verify(now=datetime(2024, 5, 18, tzinfo=UTC))
    assert refusal(outcome) == (403, "InvalidSignatureException")
    assert isinstance(outcome, AuthError) and "Date in Credential scope" in outcome.message


# --- throttling ----------------------------------------------------------------------------
class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    clock = FakeMonotonic()
    bucket = TokenBucket(5, clock=clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.2
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 10
    assert sum(bucket.take() for _ in range(10)) == 5  # refills to the burst, no more
    burst = TokenBucket(0.5, burst=3, clock=clock)
    assert [burst.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.9
    assert not burst.take()
    clock.now += 0.1
    assert burst.take()


def _request(signed: Signed) -> Request:
    body = signed.body

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": signed.method,
        "path": signed.path,
        "raw_path": signed.path.encode(),
        "query_string": signed.query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in signed.headers],
    }
    return Request(scope, receive)


def test_front_door_check_looks_each_key_up_once() -> None:
    """The signature's key lookup also finds the caller (a lookup stats the credentials
    file, a user's reads the store): one each per request, owner's and user's."""
    owner_asked: list[str] = []
    users_asked: list[str] = []
    user_key = Credentials("MNPUSERKEY0000000001", "user-secret")

    def owner_keys(key_id: str) -> Credentials | None:
        owner_asked.append(key_id)
        return KEYS.get(key_id)

    def users(key_id: str) -> tuple[Caller, str] | None:
        users_asked.append(key_id)
        if key_id != user_key.access_key_id:
            return None
        return Caller("alice", Role.USER), user_key.secret_access_key

    door = FrontDoor(owner_keys, now=lambda: T0, users=users)
    url = f"{ENDPOINT}/v1/submitjob"
    request = _request(sign("POST", url, b"{}"))
    assert asyncio.run(door.check(request)) is None
    assert request.state.caller == owner()
    assert (owner_asked, users_asked) == ([KEY.access_key_id], [])
    owner_asked.clear()
    request = _request(sign("POST", url, b"{}", key=user_key))
    assert asyncio.run(door.check(request)) is None
    assert request.state.caller.name == "alice"
    assert request.state.aws_identity.profile == "user:alice"
    assert (owner_asked, users_asked) == ([user_key.access_key_id], [user_key.access_key_id])


# --- the front door behind a real server, called by boto3 --------------------------------
@dataclass
class Server:
    url: str
    clock: FakeMonotonic
    seen: list[tuple[str, str]]


def stub_app(front_door: FrontDoor, style: str, seen: list[tuple[str, str]]) -> Starlette:
    """Batch-shaped stub routes behind the front door, mounted one way or the other."""
    check = front_door.check if style == "check" else None

    async def answer(request: Request) -> Response:
        if check is not None:
            refused = await check(request)
            if refused is not None:
                return refused
        seen.append((request.method, request.url.path))
        if request.url.path.startswith("/v1/tags/"):
            return JSONResponse({"tags": {"k": "v"}} if request.method == "GET" else {})
        if request.url.path == "/v1/submitjob":
            return JSONResponse({"jobArn": "arn", "jobName": "j", "jobId": "id"})
        return JSONResponse({"jobSummaryList": []})

    async def mnp_own(request: Request) -> Response:
        return JSONResponse({"ok": True})

    middleware = [Middleware(AwsAuthMiddleware, front_door=front_door)] if style == "mw" else []
    return Starlette(
        routes=[
            Route("/v1/tags/{arn:path}", answer, methods=["GET", "POST", "DELETE"]),
            Route("/v1/{op}", answer, methods=["POST"]),
            Route("/healthz", mnp_own, methods=["GET"]),
        ],
        middleware=middleware,
    )


@pytest.fixture(params=["mw", "check"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    clock = FakeMonotonic()
    seen: list[tuple[str, str]] = []
    front_door = FrontDoor(KEYS, submit_rate=5, monotonic=clock)
    port = free_port()
    config = uvicorn.Config(
        stub_app(front_door, request.param, seen), host="127.0.0.1", port=port, log_level="error"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_for("the stub server", lambda: uv.started, timeout=10)
    try:
        yield Server(f"http://127.0.0.1:{port}", clock, seen)
    finally:
        uv.should_exit = True
        thread.join(10)


NO_RETRIES = Config(retries={"total_max_attempts": 1})


def batch_client(server: Server, key: Credentials = KEY, **kw: Any) -> Any:
    return boto3.client(
        "batch",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=kw.pop("config", NO_RETRIES),
        **kw,
    )


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], exc.value.response["Error"][
        "Code"
    ]


ARN = "arn:aws:batch:us-east-1:123456789012:job-queue/my queue~+%"


def test_boto3_signed_calls_pass_including_tag_paths(server: Server) -> None:
    client = batch_client(server)
    assert client.list_jobs(jobQueue="q")["jobSummaryList"] == []
    assert client.list_tags_for_resource(resourceArn=ARN)["tags"] == {"k": "v"}
    client.tag_resource(resourceArn=ARN, tags={"a": "b"})
    client.untag_resource(resourceArn=ARN, tagKeys=["a", "b c", "é"])
    assert [m for m, _ in server.seen] == ["POST", "GET", "POST", "DELETE"]


def test_boto3_sees_aws_refusal_codes(server: Server) -> None:
    unsigned = batch_client(server, config=NO_RETRIES.merge(Config(signature_version=UNSIGNED)))
    with pytest.raises(ClientError) as missing:
        unsigned.list_jobs(jobQueue="q")
    assert error_code(missing) == (403, "MissingAuthenticationTokenException")

    with pytest.raises(ClientError) as wrong:
        batch_client(server, Credentials(KEY.access_key_id, "not the secret")).list_jobs(
            jobQueue="q"
        )
    assert error_code(wrong) == (403, "InvalidSignatureException")
    assert "does not match the signature you provided" in str(wrong.value)

    with pytest.raises(ClientError) as unknown:
        batch_client(server, Credentials("MNPUNKNOWN", "x")).list_jobs(jobQueue="q")
    assert error_code(unknown) == (403, "UnrecognizedClientException")

    stale = datetime.now(UTC) - timedelta(minutes=20)
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=stale),
        pytest.raises(ClientError) as expired,
    ):
        batch_client(server).list_jobs(jobQueue="q")
    assert error_code(expired) == (403, "InvalidSignatureException")
    assert "Signature expired" in str(expired.value)
    assert server.seen == []


def test_submit_job_is_throttled_past_the_configured_rate(server: Server) -> None:
    client = batch_client(server)
    body = {"jobName": "j", "jobQueue": "q", "jobDefinition": "d"}
    for _ in range(5):
        assert client.submit_job(**body)["jobId"] == "id"
    with pytest.raises(ClientError) as throttled:
        client.submit_job(**body)
    assert error_code(throttled) == (429, "TooManyRequestsException")
    assert client.list_jobs(jobQueue="q")["jobSummaryList"] == []  # other calls are not limited
    server.clock.now += 1.0
    assert client.submit_job(**body)["jobId"] == "id"


def test_mnp_paths_are_not_the_front_doors_business(server: Server) -> None:
    import httpx

    assert httpx.get(f"{server.url}/healthz").json() == {"ok": True}


# --- credentials ---------------------------------------------------------------------------
def test_first_start_creates_a_private_random_key(tmp_path: Path) -> None:
    creds = ensure_credentials(tmp_path, environ={})
    path = tmp_path / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert creds.access_key_id.startswith("MNP") and len(creds.access_key_id) == 20
    assert len(creds.secret_access_key) == 40
    assert ensure_credentials(tmp_path, environ={}) == creds
    assert parse(path.read_text()) == [creds]
    assert creds.secret_access_key not in repr(creds)


def test_environment_key_needs_no_file_and_both_are_accepted(tmp_path: Path) -> None:
    env = {"MNP_AWS_ACCESS_KEY_ID": "MNPENVKEY", "MNP_AWS_SECRET_ACCESS_KEY": "envsecret"}
    assert ensure_credentials(tmp_path, environ=env).access_key_id == "MNPENVKEY"
    assert not (tmp_path / "credentials").exists()
    write_file(tmp_path / "credentials", [Credentials("MNPFILE", "f", "ci"), KEY])
    store = CredentialStore(tmp_path, environ=env)
    assert store.lookup("MNPENVKEY") == Credentials("MNPENVKEY", "envsecret", "env")
    assert store.lookup("MNPFILE") == Credentials("MNPFILE", "f", "ci")
    assert store("nope") is None


def test_credential_store_rereads_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    write_file(path, [KEY])
    store = CredentialStore(tmp_path, environ={})
    assert store.lookup(KEY.access_key_id) == KEY
    path.write_text(
        "[default]\naws_access_key_id = MNPNEW\naws_secret_access_key = n\n"
        "[profile other]\naws_access_key_id=MNPOTHER\naws_secret_access_key=o\n"
        "[incomplete]\naws_access_key_id=MNPHALF\n"
    )
    os.utime(path, ns=(1, 1))  # a different stamp even within the same clock tick
    assert store.lookup(KEY.access_key_id) is None
    assert store.lookup("MNPOTHER") == Credentials("MNPOTHER", "o", "other")
    assert store.lookup("MNPHALF") is None


def test_an_unusable_credentials_file_is_an_error_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "credentials").write_text("[default]\naws_access_key_id = only-half\n")
    with pytest.raises(CredentialsError):
        ensure_credentials(tmp_path, environ={})
    (tmp_path / "credentials").write_text("no sections at all")
    with pytest.raises(CredentialsError):
        ensure_credentials(tmp_path, environ={})


# --- mnp env -------------------------------------------------------------------------------
def run_in_sh(script: str, lines: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["sh", "-c", 'eval "$MNP_ENV_LINES"; ' + script],
        env={"PATH": os.environ["PATH"], "MNP_ENV_LINES": "\n".join(lines), **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_env_lines_survive_sh_with_hostile_values() -> None:
    lines = env_lines("http://127.0.0.1:8750", "MNPKEY", HOSTILE_SECRET)
    out = run_in_sh(
        'printf "%s\\n%s\\n%s\\n%s\\n[%s]" "$AWS_ENDPOINT_URL_BATCH" '
        '"$AWS_ENDPOINT_URL_CLOUDWATCH_LOGS" "$AWS_ACCESS_KEY_ID" "$AWS_DEFAULT_REGION" '
        '"${AWS_SESSION_TOKEN-unset}"; printf "\\n%s" "$AWS_SECRET_ACCESS_KEY"',
        lines,
        env={"AWS_SESSION_TOKEN": "left over from real AWS"},
    )
    url, url2, key, region, token, secret = out.split("\n", 5)
    assert (url, url2, key, region, token) == (
        "http://127.0.0.1:8750",
        "http://127.0.0.1:8750",
        "MNPKEY",
        "us-east-1",
        "[unset]",
    )
    assert secret == HOSTILE_SECRET


def test_mnp_env_command_reads_head_url_and_credentials(tmp_path: Path) -> None:
    home = tmp_path / "home with 'quotes' and $dollar"
    write_file(
        home / "credentials", [Credentials("MNPCLI", HOSTILE_SECRET), Credentials("MNPX", "y", "x")]
    )
    runner = CliRunner()
    result = runner.invoke(cli, ["--home", str(home), "--url", "http://10.0.0.5:9000", "env"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "export AWS_ENDPOINT_URL_BATCH=http://10.0.0.5:9000"
    out = run_in_sh('printf "%s|%s" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"', lines)
    assert out == f"MNPCLI|{HOSTILE_SECRET}"

    other = runner.invoke(
        cli, ["--home", str(home), "--url", "http://h:1", "env", "--profile", "nope"]
    )
    assert other.exit_code == 1 and "no profile 'nope'" in other.output


def test_mnp_env_without_a_running_head_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "env"])
    assert result.exit_code == 1
    assert "no head node is running" in result.output
