"""A compute environment's shared filesystem: one path every node of it sees the same.

Declared as ``{"kind", "source", "mountPath"}``; the older ``{"hostPath", "containerPath"}``
form still reads (a ``bind`` of ``hostPath`` at ``containerPath``, default ``hostPath``).

How each node gets it:

- local nodes with a network namespace: a bind mount of ``source`` at ``mountPath`` in each
  attempt's mount namespace (and its gang's SSH sessions), see :mod:`launcher.mountns`. For
  ``lustre``/``nfs``/``efs`` on local nodes, ``source`` is a path on this machine standing in
  for the mounted filesystem (nothing is mounted from a server here);
- loopback nodes share the machine's mounts: they see ``source`` at its own path only;
- SSH hosts: ``mountPath`` must already be a directory there (checked at bring-up, the host
  FAILED with ``SharedFilesystemMissing`` otherwise);
- containers: ``mountPath`` on the node mounted at ``mountPath`` in the container.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SharedFilesystemKind(enum.StrEnum):
    LUSTRE = "lustre"
    NFS = "nfs"
    EFS = "efs"
    BIND = "bind"
    """A directory of the machine, bound at ``mountPath``."""


MAX_PATH = 1024


@dataclass(frozen=True, slots=True)
class SharedFilesystem:
    kind: SharedFilesystemKind
    source: str
    """The directory on this machine bound at :attr:`mount_path` on local nodes (for
    ``lustre``/``nfs``/``efs``: the one standing in for the mounted filesystem)."""
    mount_path: str
    """Where every node and container sees it (absolute)."""

    def on_machine(self, path: str) -> str:
        """``path`` as this machine sees it outside any node's mount namespace: under
        :attr:`mount_path` → the same place under :attr:`source`; any other path unchanged."""
        root = self.mount_path.rstrip("/")
        if path == root or path.startswith(root + "/"):
            return self.source.rstrip("/") + path[len(root) :]
        return path

    def to_doc(self) -> dict[str, str]:
        return {"kind": self.kind.value, "source": self.source, "mountPath": self.mount_path}

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> SharedFilesystem:
        """Either form (module docstring); assumes :func:`shared_fs_errors` found nothing."""
        if "hostPath" in d and "source" not in d:
            host = str(d["hostPath"])
            return cls(SharedFilesystemKind.BIND, host, str(d.get("containerPath") or host))
        return cls(SharedFilesystemKind(d["kind"]), str(d["source"]), str(d["mountPath"]))


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


def shared_fs_errors(d: object, path: str) -> list[tuple[str, str]]:
    """Problems with one declaration at ``path`` (``(field path, rule)`` each, all at once);
    empty when :meth:`SharedFilesystem.from_doc` will accept it."""
    if not isinstance(d, Mapping):
        return [(path, "must be an object with kind, source and mountPath")]
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
    # every kind: a directory of this machine (for lustre/nfs/efs, the one standing in for
    # the mount on local nodes: nothing is mounted from a server here)
    problem = _path_problem(d.get("source"))
    if problem:
        errors.append((f"{path}.source", problem))
    problem = _path_problem(d.get("mountPath"))
    if problem:
        errors.append((f"{path}.mountPath", problem))
    unknown = sorted(set(d) - {"kind", "source", "mountPath"})
    if unknown:
        errors.append((f"{path}.{unknown[0]}", "is not a field of a shared filesystem"))
    return errors
