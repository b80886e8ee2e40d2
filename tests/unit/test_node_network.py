"""How a head's local nodes are networked: the setting, the addresses environments get, the
interface MPI is pinned to, and the refusals of addresses a head cannot give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from launcher.accounts import Account
from launcher.interfaces import interface_of
from launcher.netns import spawn_args
from mnp.config import network_kind, node_network_setting
from mnp.errors import InvalidInput
from mnp.providers import netns
from mnp.spec.protocol import Register
from tests.unit.helpers_core import Head


def problems(h: Head, body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as err:
        h.api["createComputeEnvironment"](body)
    return {e.path: e.message for e in err.value.errors}


def aws_env(name: str) -> dict[str, Any]:
    return {"computeEnvironmentName": name, "type": "MANAGED",
            "computeResources": {"type": "EC2", "maxvCpus": 8}}  # fmt: skip


def test_the_setting_is_auto_loopback_or_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNP_NODE_NETWORK", raising=False)
    assert node_network_setting() == "auto"
    monkeypatch.setenv("MNP_NODE_NETWORK", "Loopback")
    assert node_network_setting() == "loopback"
    monkeypatch.setenv("MNP_NODE_NETWORK", "bridge")
    with pytest.raises(ValueError, match="MNP_NODE_NETWORK='bridge': must be one of auto"):
        node_network_setting()
    assert not netns.wanted("loopback")


@pytest.mark.parametrize(
    ("addresses", "iface"),
    [
        (["127.0.0.2", "127.0.0.3"], "lo"),
        (["10.200.0.2", "10.200.1.7"], "eth0"),
        (["127.0.0.2", "10.200.0.3"], None),
        (["192.168.1.4", "192.168.1.5"], None),
        (["10.1.0.2"], None),
    ],
)
def test_gangs_pin_mpi_to_their_nodes_interface(addresses: list[str], iface: str | None) -> None:
    assert netns.interface_of(addresses) == iface


def test_an_agent_finds_the_interface_holding_its_address() -> None:
    assert interface_of("127.0.0.1") == "lo"
    assert interface_of("127.0.0.2") is None  # lo answers for it without holding it
    assert interface_of("203.0.113.9") is None and interface_of("node-1") is None


@pytest.mark.parametrize("bad", ["eth0/../x", "a b", "x" * 16, "eth0:1", ""])
def test_a_reported_interface_must_be_an_interface_name(bad: str) -> None:
    body = Register("n1", "ce", "10.1.0.2", 2, 1024, 0, 1, interface="eth0").to_wire()
    assert Register.from_wire(body).interface == "eth0"
    with pytest.raises(InvalidInput, match="interface"):
        Register.from_wire({**body, "interface": bad})


def test_kinds_and_names() -> None:
    assert (network_kind("127.0.0.9"), network_kind("10.200.0.2")) == ("loopback", "namespace")
    assert netns.is_namespace_address("10.200.3.4") and not netns.is_namespace_address("10.201.0.1")
    assert netns.node_name("local-3") == "local-3"
    odd = netns.node_name("My_CE-1")
    assert odd.startswith("n") and len(odd) == 13 and odd == netns.node_name("My_CE-1")
    assert netns.home_tag(Path("/a/home")) != netns.home_tag(Path("/b/home"))
    assert netns.TAG_RE.fullmatch(netns.home_tag(Path("/a/home")))


def test_without_a_namespace_processes_spawn_as_before() -> None:
    acct = Account("u", 1234, 1234, (1234, 27), "/home/u")
    assert spawn_args(["true"], None, None) == (["true"], {})
    assert spawn_args(["true"], None, acct) == (["true"], acct.popen_kwargs())


def test_loopback_environments_get_blocks_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNP_NODE_NETWORK", "loopback")
    h = Head.open(tmp_path / "home")
    try:
        h.api["createComputeEnvironment"](aws_env("a"))
        h.api["createComputeEnvironment"](aws_env("b"))
        assert [h.state.ces[n].first_address for n in "ab"] == ["127.0.0.2", "127.0.0.66"]
    finally:
        h.close()


@pytest.mark.skipif(not netns.available(), reason="needs root and `ip netns`")
def test_namespace_environments_get_namespace_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNP_NODE_NETWORK", "auto")
    h = Head.open(tmp_path / "home")
    try:
        h.api["createComputeEnvironment"](aws_env("a"))
        h.api["createComputeEnvironment"](aws_env("b"))
        assert [h.state.ces[n].first_address for n in "ab"] == ["10.200.0.2", "10.200.0.66"]
    finally:
        h.close()


def test_addresses_no_node_can_have_are_refused_naming_the_field(tmp_path: Path) -> None:
    h = Head.open(tmp_path / "home")
    try:
        for first, rule in [
            ("10.1.2.3", "must be in 127.0.0.0/8 (loopback nodes) or leave 64 addresses in"),
            ("10.200.255.250", "must be in 127.0.0.0/8"),
            ("127.255.255.230", "no room for 64 nodes"),
        ]:
            body = {"computeEnvironmentName": "x", "type": "MANAGED",
                    "mnp": {"nodes": 1, "firstAddress": first}}  # fmt: skip
            got = problems(h, body)
            assert list(got) == ["mnp.firstAddress"] and rule in got["mnp.firstAddress"], got
        assert "x" not in h.state.ces
    finally:
        h.close()
