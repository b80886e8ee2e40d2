"""What a node's Docker runtime runs for one attempt: the container, its mounts, limits and
devices, and the labels that mark it as mnp's (plain data, shipped inside an Assignment)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Mount:
    """A bind mount of a node path into a container (``source`` None: an anonymous volume)."""

    target: str
    source: str | None = None
    read_only: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"target": self.target, "source": self.source, "readOnly": self.read_only}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Mount:
        source = d.get("source")
        return cls(
            target=str(d["target"]),
            source=None if source is None else str(source),
            read_only=bool(d.get("readOnly", False)),
        )


@dataclass(frozen=True, slots=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class Tmpfs:
    target: str
    size_mib: int | None = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Device:
    host_path: str
    container_path: str
    permissions: str = "rwm"
    """Any of ``r``, ``w``, ``m`` (mknod), as Docker writes it."""


CONTAINER_LABEL_JOB = "mnp.job-id"
CONTAINER_LABEL_ATTEMPT = "mnp.attempt-id"
CONTAINER_LABEL_NODE = "mnp.node-id"
CONTAINER_LABEL_ROOT = "mnp.node-root"
"""Labels on every container an agent creates; the node root (the agent's directory) tells
apart nodes of different head nodes that share an id (``local-1``)."""


@dataclass(frozen=True, slots=True)
class WithoutEngine:
    """How a node runs an attempt without its image, as a plain process: its compute
    environment's image policy (``process`` or ``auto``) and the image's mapping
    (:mod:`mnp.build.images`). ``entrypoint`` goes before the command, ``command`` stands in
    for an empty one (Docker's ENTRYPOINT and CMD), ``path`` goes before ``PATH``,
    ``directory`` is the working directory (None: the attempt's own)."""

    policy: str
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    directory: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "entrypoint": list(self.entrypoint),
            "command": list(self.command),
            "path": list(self.path),
            "directory": self.directory,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> WithoutEngine:
        directory = d.get("directory")
        return cls(
            policy=str(d["policy"]),
            entrypoint=tuple(str(a) for a in d.get("entrypoint") or []),
            command=tuple(str(a) for a in d.get("command") or []),
            path=tuple(str(a) for a in d.get("path") or []),
            directory=None if directory is None else str(directory),
        )


@dataclass(frozen=True, slots=True)
class ContainerRun:
    """How the node runs an attempt in a Docker container (plain data; built by
    :func:`mnp.build.container.container_run`). The assignment's command, environment and
    timeout apply as for a process; the container uses the host's network."""

    image: str
    user: str | None = None
    privileged: bool = False
    read_only_root: bool = False
    mounts: tuple[Mount, ...] = ()
    ulimits: tuple[Ulimit, ...] = ()
    tmpfs: tuple[Tmpfs, ...] = ()
    shm_size_mib: int | None = None
    init: bool = False
    devices: tuple[Device, ...] = ()
    memory_mib: int | None = None
    """Hard limit; past it the kernel's OOM killer ends the container."""
    max_swap_mib: int | None = None
    """Swap on top of ``memory_mib``; None: the node's default."""
    swappiness: int | None = None
    cpu_shares: int | None = None
    """1024 per vCPU (relative weight under contention)."""
    gpus: int = 0
    without_engine: WithoutEngine | None = None
    """Set when the environment's image policy lets the node run the command as a plain
    process instead (None: the image policy ``docker``, always the engine)."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "user": self.user,
            "privileged": self.privileged,
            "readOnlyRoot": self.read_only_root,
            "mounts": [m.to_wire() for m in self.mounts],
            "ulimits": [{"name": u.name, "soft": u.soft, "hard": u.hard} for u in self.ulimits],
            "tmpfs": [
                {"target": t.target, "sizeMiB": t.size_mib, "options": list(t.options)}
                for t in self.tmpfs
            ],
            "shmSizeMiB": self.shm_size_mib,
            "init": self.init,
            "devices": [
                {"hostPath": x.host_path, "containerPath": x.container_path, "perms": x.permissions}
                for x in self.devices
            ],
            "memoryMiB": self.memory_mib,
            "maxSwapMiB": self.max_swap_mib,
            "swappiness": self.swappiness,
            "cpuShares": self.cpu_shares,
            "gpus": self.gpus,
        }
        if self.without_engine is not None:
            out["withoutEngine"] = self.without_engine.to_wire()
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ContainerRun:
        def opt_int(key: str) -> int | None:
            return None if d.get(key) is None else int(d[key])

        return cls(
            image=str(d["image"]),
            user=None if d.get("user") is None else str(d["user"]),
            privileged=bool(d.get("privileged", False)),
            read_only_root=bool(d.get("readOnlyRoot", False)),
            mounts=tuple(Mount.from_wire(m) for m in d.get("mounts") or []),
            ulimits=tuple(
                Ulimit(str(u["name"]), int(u["soft"]), int(u["hard"]))
                for u in d.get("ulimits") or []
            ),
            tmpfs=tuple(
                Tmpfs(
                    str(t["target"]),
                    None if t.get("sizeMiB") is None else int(t["sizeMiB"]),
                    tuple(str(o) for o in t.get("options") or []),
                )
                for t in d.get("tmpfs") or []
            ),
            shm_size_mib=opt_int("shmSizeMiB"),
            init=bool(d.get("init", False)),
            devices=tuple(
                Device(str(x["hostPath"]), str(x["containerPath"]), str(x.get("perms", "rwm")))
                for x in d.get("devices") or []
            ),
            memory_mib=opt_int("memoryMiB"),
            max_swap_mib=opt_int("maxSwapMiB"),
            swappiness=opt_int("swappiness"),
            cpu_shares=opt_int("cpuShares"),
            gpus=int(d.get("gpus") or 0),
            without_engine=WithoutEngine.from_wire(d["withoutEngine"])
            if d.get("withoutEngine")
            else None,
        )
