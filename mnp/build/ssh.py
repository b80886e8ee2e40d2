"""SSH wiring text for a multi-node parallel job: ``ssh_config`` and ``known_hosts`` (pure
builders, golden-tested in ``tests/unit/test_sshwire.py``; the per-attempt key pair they
name comes from :func:`mnp.scheduler.sshkeys.generate_job_key`).

The head node builds these once per attempt and ships them to every node of the gang in
:class:`mnp.spec.protocol.Wiring`; paths usually contain
:data:`mnp.spec.protocol.WIRING_PLACEHOLDER`,
which the agent replaces with the attempt's wiring directory.

How OpenSSH reads what is written here (checked against OpenSSH 9.2 by the tests):

- ``ssh_config`` arguments are split like a shell word list: double quotes keep spaces, and
  inside them ``\\"`` and ``\\\\`` are the only escapes needed. ``IdentityFile`` and
  ``UserKnownHostsFile`` then go through ``%`` token expansion (so ``%`` is written ``%%``)
  and ``${VAR}`` expansion, which has no escape: a path containing ``${`` is refused.
- With ``HostName`` set and no ``HostKeyAlias``, the client looks a host key up under the
  *HostName* and port (``[127.0.0.4]:40123``), never under the alias; :func:`known_hosts`
  therefore writes address lines only (port 22 is written bare, as OpenSSH looks it up).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_TOKEN = re.compile(r"[A-Za-z0-9._-]+")
"""Host aliases and user names: one bare ssh_config word, no pattern characters."""
_ADDRESS = re.compile(r"[A-Za-z0-9.:_-]+")
_HOST_KEY = re.compile(r"(ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+) [A-Za-z0-9+/]+=*")


@dataclass(frozen=True, slots=True)
class SshNode:
    """One node's SSH endpoint as the job's ``ssh`` client must see it."""

    alias: str
    """Name used in hostfiles and on ``ssh`` command lines (``node0``…)."""
    address: str
    """IP address (or resolvable name) the node's SSH server listens on."""
    port: int
    host_key: str
    """The server's public host key line (``ssh-ed25519 AAAA…``; a trailing comment is
    dropped)."""


def ssh_config(
    nodes: Sequence[SshNode],
    identity_file: str,
    known_hosts_file: str,
    user: str = "root",
) -> str:
    """The job's ``ssh_config``: a ``Host`` block per node (matching its alias and its
    address), then shared ``Host *`` settings.

    ``user`` is the login name sent (the node's embedded server runs commands as itself
    whatever it is; an OpenSSH sshd needs the real account). Raises :class:`ValueError` for an
    alias, address or user that is not a single safe word, a port outside 1–65535, or a path
    ssh_config cannot carry (see :func:`config_path`).
    """
    _check_nodes(nodes)
    if not _TOKEN.fullmatch(user):
        raise ValueError(f"user: {user!r} is not a plain user name")
    lines: list[str] = []
    for node in nodes:
        # the address too: a bare `ssh <address>` (an AWS-style wrapper's) reaches the node's
        # own server, which on a host is not the one on port 22
        names = node.alias if node.address == node.alias else f"{node.alias} {node.address}"
        lines += [f"Host {names}", f"    HostName {node.address}", f"    Port {node.port}"]
    lines += [
        "Host *",
        f"    User {user}",
        f"    IdentityFile {config_path(identity_file)}",
        "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {config_path(known_hosts_file)}",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "    ConnectTimeout 5",
        "    ConnectionAttempts 10",
        "    ServerAliveInterval 5",
        "    ServerAliveCountMax 3",
        "    LogLevel ERROR",
    ]
    return "\n".join(lines) + "\n"


def known_hosts(nodes: Sequence[SshNode]) -> str:
    """``known_hosts`` lines for the nodes: ``[address]:port <type> <key>``, one per node.

    Raises :class:`ValueError` for a malformed host key or node (see :func:`ssh_config`).
    """
    _check_nodes(nodes)
    lines = []
    for node in nodes:
        host = node.address if node.port == 22 else f"[{node.address}]:{node.port}"
        lines.append(f"{host} {_key_without_comment(node.host_key)}")
    return "\n".join(lines) + "\n"


def config_path(path: str) -> str:
    """``path`` as one double-quoted ssh_config argument for ``IdentityFile`` and
    ``UserKnownHostsFile`` (``\\`` and ``"`` escaped, ``%`` doubled).

    Raises :class:`ValueError` for an empty path or one holding a line break, a NUL or
    ``${`` (OpenSSH would expand it as an environment variable, with no way to escape it).
    """
    if not path:
        raise ValueError("path: empty")
    if any(c in path for c in "\n\r\0"):
        raise ValueError(f"path: {path!r} contains a line break or NUL")
    if "${" in path:
        raise ValueError(f"path: {path!r} contains '${{', which ssh would expand")
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped}"'


def _key_without_comment(host_key: str) -> str:
    parts = host_key.split()
    key = " ".join(parts[:2])
    if len(parts) < 2 or not _HOST_KEY.fullmatch(key):
        raise ValueError(f"host_key: {host_key!r} is not an OpenSSH public key line")
    return key


def _check_nodes(nodes: Sequence[SshNode]) -> None:
    errors: list[str] = []
    aliases: set[str] = set()
    for i, node in enumerate(nodes):
        if not _TOKEN.fullmatch(node.alias):
            errors.append(f"nodes[{i}].alias: {node.alias!r} is not a plain host name")
        elif node.alias in aliases:
            errors.append(f"nodes[{i}].alias: {node.alias!r} is repeated")
        aliases.add(node.alias)
        if not _ADDRESS.fullmatch(node.address):
            errors.append(f"nodes[{i}].address: {node.address!r} is not an address")
        if not 1 <= node.port <= 65535:
            errors.append(f"nodes[{i}].port: {node.port} is outside 1-65535")
        try:
            _key_without_comment(node.host_key)
        except ValueError as exc:
            errors.append(f"nodes[{i}].{exc}")
    if errors:
        raise ValueError("; ".join(errors))
