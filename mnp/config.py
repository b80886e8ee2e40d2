"""Head-node configuration and where the head node keeps its files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def default_home() -> Path:
    """The state directory: ``$MNP_HOME``, else ``~/.mnp``."""
    env = os.environ.get("MNP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".mnp"


@dataclass(frozen=True, slots=True)
class LocalNodesConfig:
    """The embedded default compute environment: node agents on this machine."""

    name: str = "local"
    nodes: int = 4
    vcpus: int = 4
    memory_mib: int = 4096
    gpus: int = 0
    first_address: str = "127.0.0.2"


@dataclass(frozen=True, slots=True)
class HeadConfig:
    home: Path = field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 8750
    """0 picks a free port (written to head.json)."""
    token: str | None = None
    submit_rate_per_second: float | None = None
    """SubmitJob requests per second through the AWS front door (429 past it); None: no limit."""
    submit_burst: float | None = None
    """SubmitJob requests allowed at once (default: the rate, at least 1)."""
    default_queue: str = "default"
    local: LocalNodesConfig | None = field(default_factory=LocalNodesConfig)
    """None: create no compute environment at start (an empty head node)."""
    heartbeat_seconds: float = 2.0
    """How often agents poll; a node silent for ``lost_after_seconds`` is lost."""
    lost_after_seconds: float = 10.0
    min_timeout_seconds: float = 60.0
    """Floor for ``timeout.attemptDurationSeconds`` (AWS: 60). Tests lower it."""
    kill_grace_seconds: float = 30.0
    """SIGTERM → SIGKILL grace on timeout and terminate (AWS: 30 s)."""
    mpi_hang_seconds: float = 10.0
    """An MNP attempt whose MPI daemon or proxy ended on some node, while the main node's
    command keeps running this long afterwards, is taken as hung and failed (MPICH hangs when
    a rank exits without MPI_Finalize)."""

    @property
    def db_path(self) -> Path:
        return self.home / "mnp.sqlite3"

    @property
    def head_file(self) -> Path:
        return self.home / "head.json"

    @property
    def pid_file(self) -> Path:
        return self.home / "head.pid"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


@dataclass(frozen=True, slots=True)
class HeadInfo:
    """What a running head node publishes in ``<home>/head.json`` for clients."""

    url: str
    pid: int
    token: str | None

    def write(self, path: Path) -> None:
        """Atomically, readable by the owner only (it holds the native API's token)."""
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"url": self.url, "pid": self.pid, "token": self.token}))
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> HeadInfo | None:
        try:
            d: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(url=str(d["url"]), pid=int(d["pid"]), token=d.get("token"))


def ensure_token(home: Path) -> str:
    """The native API's token: ``<home>/token``, created (0600) on first start."""
    path = home / "token"
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if not token:
        import secrets

        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return token
