"""Pure SSH wiring builders: golden files, hostile paths, refusals, the job key pair.

Regenerate the golden files after an intended change with ``MNP_UPDATE_GOLDEN=1``, then
review the diff before committing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mnp.build.ssh import SshNode, config_path, known_hosts, ssh_config
from mnp.scheduler.sshkeys import generate_job_key
from mnp.spec.protocol import WIRING_PLACEHOLDER
from tests.unit import goldens

GOLDEN = Path(__file__).parent / "golden"

NODES = [
    SshNode(
        "node0",
        "127.0.0.2",
        40001,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMkBwLcDSfqk3YL6uRsiMgyMMBv4aft4iHgNOT6BHNGT mnp-node",
    ),
    SshNode(
        "node1",
        "127.0.0.3",
        40002,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAB/ag6z9Ek8qg9Fy/wZ5qKjKO14AA3zf/Ats03/s7ZN",
    ),
    SshNode(
        "node2",
        "127.0.0.4",
        22,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd6Qg2z/5i4tJWuZqSJrx7rIqHA6zMZ37Iapx3qKXHF",
    ),
    SshNode(
        "node3",
        "127.0.0.5",
        40004,
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDCCaNkZAN7ovu+WfMCMXI8CC+fRZl8l+cmRsO4iDDdG",
    ),
]
HOSTILE = '/tmp/we ird/it\'s $HOME; 50% "quoted" back\\slash #not-a-comment'


def assert_golden(name: str, actual: str) -> None:
    goldens.check("", name, actual)


def test_ssh_config_golden() -> None:
    text = ssh_config(
        NODES,
        identity_file=f"{WIRING_PLACEHOLDER}/id_ed25519",
        known_hosts_file=f"{WIRING_PLACEHOLDER}/known_hosts",
        user="mnp",
    )
    assert_golden("ssh_config", text)


def test_known_hosts_golden() -> None:
    assert_golden("known_hosts", known_hosts(NODES))


def test_ssh_config_default_user_is_root() -> None:
    assert "    User root\n" in ssh_config(NODES[:1], "/k", "/h")


@pytest.mark.parametrize(
    ("path", "written"),
    [
        ("/a b/k", '"/a b/k"'),
        ("/it's/$x;y", '"/it\'s/$x;y"'),
        ('/q"q', '"/q\\"q"'),
        ("/b\\s", '"/b\\\\s"'),
        ("/50%/%d", '"/50%%/%%d"'),
        ("/#h", '"/#h"'),
    ],
)
def test_config_path_quoting(path: str, written: str) -> None:
    assert config_path(path) == written


@pytest.mark.parametrize("path", ["", "/a\nb", "/a\rb", "/a\0b", "/a/${HOME}/k"])
def test_config_path_refuses_what_ssh_cannot_carry(path: str) -> None:
    with pytest.raises(ValueError, match="path"):
        config_path(path)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client `ssh` not installed")
def test_openssh_parses_hostile_paths_back(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(ssh_config(NODES, HOSTILE + "/id", HOSTILE + "/kh"))
    result = subprocess.run(
        ["ssh", "-G", "-F", str(cfg), "node1"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    settings = [line.split(" ", 1) for line in result.stdout.splitlines()]
    values = {k: v for k, v in settings if k != "identityfile"}
    # ``ssh -G`` prints IdentityFile before %-expansion, UserKnownHostsFile after it.
    assert [v for k, v in settings if k == "identityfile"] == [HOSTILE.replace("%", "%%") + "/id"]
    assert values["userknownhostsfile"] == HOSTILE + "/kh"
    assert values["hostname"] == "127.0.0.3"
    assert values["port"] == "40002"
    assert values["stricthostkeychecking"] == "true"
    assert values["batchmode"] == "yes"


def test_known_hosts_drops_comment_and_brackets_non_default_ports() -> None:
    lines = known_hosts(NODES).splitlines()
    assert lines[0].startswith("[127.0.0.2]:40001 ssh-ed25519 AAAA")
    assert not lines[0].endswith("mnp-node")
    assert lines[2].startswith("127.0.0.4 ssh-ed25519 ")


def test_builders_report_every_bad_node_at_once() -> None:
    bad = [
        SshNode("node 0", "127.0.0.2", 1, NODES[0].host_key),
        SshNode("node1", "127.0.0.3;rm", 0, "not a key"),
        SshNode("node1", "127.0.0.4", 22, NODES[2].host_key),
    ]
    with pytest.raises(ValueError) as info:
        ssh_config(bad, "/k", "/h")
    message = str(info.value)
    for expected in [
        "nodes[0].alias",
        "nodes[1].address",
        "nodes[1].port",
        "nodes[1].host_key",
        "nodes[2].alias: 'node1' is repeated",
    ]:
        assert expected in message
    with pytest.raises(ValueError, match="user"):
        ssh_config(NODES, "/k", "/h", user="root\nHost evil")


def test_generate_job_key(tmp_path: Path) -> None:
    private, public = generate_job_key()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert public.startswith("ssh-ed25519 AAAA")
    assert generate_job_key()[1] != public
    if shutil.which("ssh-keygen") is None:
        return
    key = tmp_path / "id"
    key.write_text(private)
    key.chmod(0o600)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout
    assert derived.split()[:2] == public.split()[:2]
