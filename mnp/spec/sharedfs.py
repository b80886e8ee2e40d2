"""A compute environment's shared filesystem: one path every node of it sees the same.

Declared as ``{"kind", "source", "mountPath", "remote"}``; the older ``{"hostPath",
"containerPath"}`` form still reads (a ``bind`` of ``hostPath`` at ``containerPath``, default
``hostPath``). ``remote`` (not for ``bind``) is what a node that mounts rather than binds
mounts: ``<dns>@tcp:/<mountname>`` for ``lustre``, the file system's DNS name (optionally
``:/path``) for ``efs``, ``host:/export`` for ``nfs``. Either ``source`` or ``remote`` must be
given; which one an environment needs depends on its nodes (:func:`shared_fs_errors`'s
``nodes``).

How each node gets it:

- local nodes with a network namespace: a bind mount of ``source`` at ``mountPath`` in each
  attempt's mount namespace (and its gang's SSH sessions), see :mod:`launcher.mountns`. For
  ``lustre``/``nfs``/``efs`` on local nodes, ``source`` is a path on this machine standing in
  for the mounted filesystem (nothing is mounted from a server here);
- loopback nodes share the machine's mounts: they see ``source`` at its own path only;
- SSH hosts: ``mountPath`` must already be a directory there (checked at bring-up, the host
  FAILED with ``SharedFilesystemMissing`` otherwise);
- containers: ``mountPath`` on the node mounted at ``mountPath`` in the container;
- EC2 instances: their user data mounts ``remote`` at ``mountPath`` (:mod:`mnp.ec2.userdata`;
  a ``bind`` binds ``source``, a directory of the instance).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal


class SharedFilesystemKind(enum.StrEnum):
    LUSTRE = "lustre"
    NFS = "nfs"
    EFS = "efs"
    BIND = "bind"
    """A directory of the machine, bound at ``mountPath``."""


MAX_PATH = 1024

HOST_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
"""A DNS name or IPv4 address, as a regular expression (printable ASCII, no leading ``-``:
nothing ``mount`` could read as an option)."""
LUSTRE_REMOTE_RE = re.compile(rf"({HOST_PATTERN})@tcp:/([A-Za-z0-9_]+)")
EFS_REMOTE_RE = re.compile(rf"({HOST_PATTERN})(?::(/[!-~]*))?")
NFS_REMOTE_RE = re.compile(rf"({HOST_PATTERN}|\[[0-9A-Fa-f:.]+\]):(/[!-~]*)")
_REMOTE_FORMS = {
    SharedFilesystemKind.LUSTRE: (LUSTRE_REMOTE_RE, "a Lustre source <dns>@tcp:/<mountname>"),
    SharedFilesystemKind.EFS: (EFS_REMOTE_RE, "an EFS DNS name[:/path]"),
    SharedFilesystemKind.NFS: (NFS_REMOTE_RE, "an NFS source host:/export"),
}

SHARED_FS_TAG = "mnp:sharedFilesystem"
"""The compute environment tag that declares it where no ``mnp`` block can be sent (boto3):
``<kind> <remote-or-source> <mountPath>``, read when the environment is created."""

NodesUse = Literal["bind", "mount"]
"""How an environment's nodes get the filesystem: ``bind`` (local nodes, SSH hosts: its
``source`` is needed) or ``mount`` (EC2 instances: its ``remote`` is needed)."""


def remote_problem(kind: SharedFilesystemKind, remote: str) -> str | None:
    """Why ``remote`` cannot be what a ``kind`` filesystem mounts (None: it can)."""
    form = _REMOTE_FORMS.get(kind)
    if form is None:
        return "is not used by a bind filesystem (it binds source)"
    if not form[0].fullmatch(remote):
        return f"is not {form[1]}"
    return None


@dataclass(frozen=True, slots=True)
class SharedFilesystem:
    kind: SharedFilesystemKind
    source: str
    """Where a node's machine has it outside any mount namespace: the directory on this
    machine bound at :attr:`mount_path` on local nodes (for ``lustre``/``nfs``/``efs``: the
    one standing in for the mounted filesystem). Declared without one (only :attr:`remote`),
    it is :attr:`mount_path`, where an instance has ``remote`` mounted."""
    mount_path: str
    """Where every node and container sees it (absolute)."""
    remote: str | None = None
    """What a node that mounts rather than binds (an EC2 instance) mounts at
    :attr:`mount_path` (module docstring); None for ``bind``."""

    def on_machine(self, path: str) -> str:
        """``path`` as this machine sees it outside any node's mount namespace: under
        :attr:`mount_path` → the same place under :attr:`source`; any other path unchanged."""
        root = self.mount_path.rstrip("/")
        if path == root or path.startswith(root + "/"):
            return self.source.rstrip("/") + path[len(root) :]
        return path

    def to_doc(self) -> dict[str, str]:
        """``remote`` only when there is one (records without it read as before)."""
        doc = {"kind": self.kind.value, "source": self.source, "mountPath": self.mount_path}
        if self.remote is not None:
            doc["remote"] = self.remote
        return doc

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> SharedFilesystem:
        """Either form (module docstring); assumes :func:`shared_fs_errors` found nothing."""
        if "hostPath" in d and "source" not in d and "kind" not in d:
            host = str(d["hostPath"])
            return cls(SharedFilesystemKind.BIND, host, str(d.get("containerPath") or host))
        mount_path = str(d["mountPath"])
        remote = d.get("remote")
        source = d.get("source")
        return cls(
            SharedFilesystemKind(d["kind"]),
            mount_path if source is None else str(source),
            mount_path,
            None if remote is None else str(remote),
        )


def _path_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value.startswith("/"):
        return "is required and must be an absolute path"
    if len(value) > MAX_PATH or "\x00" in value or "\n" in value:
        return f"must be at most {MAX_PATH} characters, without NUL or newline"
    if any(part in (".", "..") for part in value.split("/")):
        return "must not contain '.' or '..' components"
    if value.rstrip("/") in ("", "/proc", "/sys", "/dev", "/tmp", "/etc", "/usr", "/bin"):
        return "must not be / or a system directory (/proc, /sys, /dev, /tmp, /etc, /usr, /bin)"
    return None


def shared_fs_errors(d: object, path: str, nodes: NodesUse | None = None) -> list[tuple[str, str]]:
    """Problems with one declaration at ``path`` (``(field path, rule)`` each, all at once);
    empty when :meth:`SharedFilesystem.from_doc` will accept it.

    ``nodes`` checks it for an environment's nodes as well: ``bind`` needs ``source`` (what
    they bind); ``mount`` needs ``remote`` for ``lustre``/``nfs``/``efs`` (what they mount)
    and refuses a ``source`` other than ``mountPath`` (an instance has the filesystem there,
    so nothing may be looked for elsewhere), and needs ``source`` for a ``bind``."""
    if not isinstance(d, Mapping):
        return [(path, "must be an object with kind, mountPath and source or remote")]
    errors: list[tuple[str, str]] = []
    if "hostPath" in d and "source" not in d and "kind" not in d:  # the older form
        for name in ("hostPath", "containerPath"):
            if name == "hostPath" or d.get(name) is not None:
                problem = _path_problem(d.get(name))
                if problem:
                    errors.append((f"{path}.{name}", problem))
        return errors
    kinds = [k.value for k in SharedFilesystemKind]
    kind = d.get("kind")
    if kind not in kinds:
        errors.append((f"{path}.kind", f"is required and must be one of {', '.join(kinds)}"))
    source, remote, mount_path = d.get("source"), d.get("remote"), d.get("mountPath")
    if remote is not None:
        if not isinstance(remote, str):
            errors.append((f"{path}.remote", "must be a string"))
        elif kind in kinds:
            problem = remote_problem(SharedFilesystemKind(kind), remote)
            if problem:
                errors.append((f"{path}.remote", problem))
    if source is None and remote is None:
        why = "is required and must be an absolute path (for lustre, nfs and efs: or give remote)"
        errors.append((f"{path}.source", why))
    elif source is not None:
        # a directory of this machine (for lustre/nfs/efs on local nodes, the one standing
        # in for the mount: nothing is mounted from a server here)
        problem = _path_problem(source)
        if problem:
            errors.append((f"{path}.source", problem))
    problem = _path_problem(mount_path)
    if problem:
        errors.append((f"{path}.mountPath", problem))
    unknown = sorted(set(d) - {"kind", "source", "mountPath", "remote"})
    if unknown:
        errors.append((f"{path}.{unknown[0]}", "is not a field of a shared filesystem"))
    if nodes == "bind" and source is None and remote is not None:
        why = "is required: this environment's nodes bind it at mountPath (remote is what an "
        errors.append((f"{path}.source", why + "EC2 instance mounts)"))
    elif nodes == "mount" and kind in kinds and kind != SharedFilesystemKind.BIND:
        if remote is None:
            why = f"is required: an EC2 environment's instances mount it at mountPath ({kind})"
            errors.append((f"{path}.remote", why))
        if source is not None and str(source).rstrip("/") != str(mount_path).rstrip("/"):
            why = "must be mountPath or absent: an EC2 environment's instances have remote "
            errors.append((f"{path}.source", why + "mounted at mountPath"))
    return errors
