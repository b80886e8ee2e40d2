"""The agent's IMDSv2 client against a real metadata server on 127.0.0.1 (tests/ec2sim)."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest

from mnp.ec2.imds import ENDPOINT_ENV, Identity, Imds, ImdsError, SpotNotice
from tests.ec2sim.imds import ImdsServer, MetadataDoc


@pytest.fixture
def server() -> Iterator[ImdsServer]:
    with ImdsServer() as s:
        yield s


def test_identity(server: ImdsServer) -> None:
    assert Imds(server.url).identity() == Identity(
        instance_id="i-0123456789abcdef0",
        instance_type="c5n.18xlarge",
        private_ipv4="10.0.1.17",
        availability_zone="us-east-1a",
        placement_group="mnp-cluster-pg",
    )
    assert server.state.token_requests == 1  # one token for all five calls


def test_no_placement_group() -> None:
    with ImdsServer(MetadataDoc(placement_group=None)) as s:
        assert Imds(s.url).identity().placement_group is None


def test_endpoint_from_boto_variable(server: ImdsServer) -> None:
    client = Imds(environ={ENDPOINT_ENV: server.url + "/"})
    assert client.endpoint == server.url
    assert client.get("instance-id") == "i-0123456789abcdef0"
    assert Imds(environ={}).endpoint == "http://169.254.169.254"


def test_token_requested_with_ttl(server: ImdsServer) -> None:
    Imds(server.url).get("instance-id")
    (expires,) = server.state.tokens.values()
    assert 21500 < expires - time.monotonic() <= 21600


def test_401_takes_a_new_token(server: ImdsServer) -> None:
    client = Imds(server.url)
    assert client.get("instance-id") == "i-0123456789abcdef0"
    server.revoke_tokens()
    assert client.get("instance-type") == "c5n.18xlarge"
    assert server.state.unauthorized == 1
    assert server.state.token_requests == 2


def test_token_renewed_before_it_ends(server: ImdsServer) -> None:
    now = [1000.0]
    client = Imds(server.url, token_ttl=600, clock=lambda: now[0])
    client.get("instance-id")
    now[0] += 500
    client.get("instance-id")
    assert server.state.token_requests == 1
    now[0] += 50  # past ttl - 60
    client.get("instance-id")
    assert server.state.token_requests == 2
    assert server.state.unauthorized == 0


def test_spot_notice(server: ImdsServer) -> None:
    client = Imds(server.url)
    assert client.spot_notice() is None
    server.set_spot_notice({"action": "terminate", "time": "2017-09-18T08:22:00Z"})
    notice = client.spot_notice()
    assert notice == SpotNotice("terminate", "2017-09-18T08:22:00Z")
    assert notice is not None and notice.action == "terminate"
    server.set_spot_notice(None)
    assert client.spot_notice() is None


@pytest.mark.parametrize(
    "served",
    [
        "<html>not json</html>",
        '{"action": "reboot", "time": "2017-09-18T08:22:00Z"}',
        '{"action": "terminate"}',
        '{"action": "terminate", "time": "soon"}',
        '["terminate", "2017-09-18T08:22:00Z"]',
    ],
)
def test_malformed_notice(server: ImdsServer, served: str) -> None:
    server.set_spot_notice(served)
    with pytest.raises(ImdsError, match="spot/instance-action: expected") as e:
        Imds(server.url).spot_notice()
    assert e.value.transient is False


def test_server_down_is_a_clear_transient_error() -> None:
    with ImdsServer() as s:
        url = s.url
    client = Imds(url, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(
        ImdsError, match=re.escape(f"metadata service at {url} did not answer")
    ) as e:
        client.identity()
    assert e.value.transient is True
    assert time.monotonic() - started < 2.0


def test_silent_server_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ImdsError, match=r"within 0\.3s") as e:
            Imds(url, timeout=0.3).spot_notice()
        assert e.value.transient is True
        assert time.monotonic() - started < 2.0


def test_environment_proxy_is_not_used(server: ImdsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert Imds(server.url).get("local-ipv4") == "10.0.1.17"


def test_missing_path_is_none(server: ImdsServer) -> None:
    assert Imds(server.url).get("no/such/path") is None
