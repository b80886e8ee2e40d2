"""The pure parts of SSH hosts: addHost's checks, ssh's errors by name, the host state table,
the backoff, and the agent bundle's module list against the import contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.errors import InvalidInput
from mnp.providers import sshbundle
from mnp.providers.ssh import classify
from mnp.scheduler.hosts import backoff_ms
from mnp.service.requests import AddHost, RemoveHost
from mnp.spec.environments import Host, HostStatus, IllegalHostTransition
from tests.unit import import_contract

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0aGlzaXNub3RhcmVhbGtleWJ1dGl0cGFyc2Vz"


def _paths(e: InvalidInput) -> set[str]:
    return {f.path for f in e.errors}


def test_add_host_names_every_bad_field_at_once(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        AddHost.from_body(
            {
                "computeEnvironment": "ce",
                "name": "Bad Name",
                "address": "-oX",
                "identityFile": "relative",
                "port": 0,
                "user": "a b",
                "vcpus": True,
                "memoryMiB": 1,
                "headUrl": "ftp://x",
                "proxyCommand": "nc %h %p\nrm -rf /",
                "bogus": 1,
            }
        )
    assert _paths(err.value) == {
        "name",
        "address",
        "identityFile",
        "port",
        "user",
        "vcpus",
        "memoryMiB",
        "headUrl",
        "proxyCommand",
        "bogus",
        "hostKey",
    }


def test_add_host_never_trusts_on_first_use(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("k")
    base = {
        "computeEnvironment": "ce",
        "name": "h1",
        "address": "10.0.0.5",
        "identityFile": str(key),
    }
    with pytest.raises(InvalidInput) as err:
        AddHost.from_body(base)  # neither a pinned key nor a known_hosts file
    assert "never trusted on first use" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        AddHost.from_body({**base, "hostKey": KEY, "knownHostsFile": str(key)})
    assert _paths(err.value) == {"hostKey"}
    with pytest.raises(InvalidInput) as err:
        AddHost.from_body({**base, "hostKey": "ssh-ed25519 AAAA; rm -rf /"})
    assert _paths(err.value) == {"hostKey"}
    req = AddHost.from_body({**base, "hostKey": KEY})
    assert (req.port, req.user, req.python, req.vcpus) == (22, "root", "python3", None)
    with pytest.raises(InvalidInput):
        AddHost.from_body({**base, "knownHostsFile": str(tmp_path / "missing")})
    assert RemoveHost.from_body({"computeEnvironment": "ce", "name": "h1"}).grace_seconds == 600


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (
            "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nThe fingerprint for the "
            "ED25519 key sent by the remote host is\nSHA256:abc+/=.\nHost key verification "
            "failed.\n",
            "HostKeyMismatch",
        ),
        ("root@10.0.0.5: Permission denied (publickey).\n", "AuthenticationRefused"),
        ("ssh: connect to host 10.0.0.5 port 22: Connection refused\n", "Unreachable"),
        ("ssh: connect to host 10.0.0.5 port 22: Connection timed out\n", "Unreachable"),
    ],
)
def test_ssh_failures_are_named(stderr: str, kind: str) -> None:
    e = classify(stderr, "root@10.0.0.5:22")
    assert e.kind == kind and str(e).startswith(f"{kind}: root@10.0.0.5:22")
    if kind == "HostKeyMismatch":
        assert "SHA256:abc+/=" in str(e)


def test_host_moves_only_along_the_table() -> None:
    h = Host("h1", "10.0.0.5", "/id", host_key=KEY)
    h.move(HostStatus.PROBING)
    h.move(HostStatus.FAILED, "Unreachable: x")
    assert h.status_reason == "Unreachable: x"
    with pytest.raises(IllegalHostTransition):
        h.move(HostStatus.ACTIVE)  # a failed host is probed again first
    h.move(HostStatus.DRAINING)
    with pytest.raises(IllegalHostTransition):
        h.move(HostStatus.PENDING)  # removal is final
    assert Host.from_doc(h.to_doc()) == h


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [backoff_ms(n) for n in (1, 2, 3, 10)] == [1000, 2000, 4000, 60000]


def test_agent_bundle_is_the_agents_import_closure() -> None:
    assert set(sshbundle.MNP_MODULES) == import_contract.ALLOWED["launcher"] - {"launcher"}
    assert set(sshbundle.THIRD_PARTY) <= import_contract.THIRD_PARTY["launcher"]
    names = [n for n, _ in sshbundle.collect()]
    assert "launcher/agent.py" in names and "mnp/spec/protocol.py" in names
    assert "asyncssh/__init__.py" in names
    assert not any(n.startswith(("mnp/service", "mnp/api", "mnp/scheduler")) for n in names)
