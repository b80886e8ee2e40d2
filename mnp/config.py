"""Head-node configuration and where the head node keeps its files.

What is private, and why: everything under the head's home (``$MNP_HOME``, default
``~/.mnp``) is readable by the head's user only -- folders 0700, files 0600 -- except that
the home itself, its ``nodes/`` and each node root in it are 0711 (:data:`TRAVERSE_DIR_MODE`:
anyone may pass through, nobody may list): a job that runs as another account (a root agent
switches to the submitter) must reach its own attempt directory (0700, its account's) by
absolute path -- its ``srun`` shim, hostfile and wiring. Passing through gives nothing else:
every other entry keeps its own 0700/0600, which :func:`secure_home` restores at each start,
so knowing a name (``token``) is not reading it. The home holds
the native API's ``token`` (and ``head.json``, which repeats it), the AWS front door's
``credentials``, the SQLite store (``mnp.sqlite3`` and its ``-wal``/``-shm``), whose job
documents carry the SSH private key of every running MNP attempt (a key is a shell as the
nodes' user on every node of the gang), every job's output under ``logs/`` and, under
``nodes/``, the local nodes' agents: their SSH host keys, logs and the attempts' directories
(outputs, wiring files with the job's private key). Anyone who can read one of those can
act as the head's user or read other users' jobs.

None of this depends on the umask the head is started with: what the head writes itself
gets its mode explicitly (:func:`private_dir`, :func:`write_private`: ``chmod`` after the
create); files other head code and SQLite create get it from the umask 077 the head sets
on itself (:func:`make_process_private`), which jobs do not inherit (:func:`job_umask`);
and :func:`secure_home`, on every start, fixes a home an older version left readable.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PRIVATE_UMASK = 0o077
TRAVERSE_DIR_MODE = 0o711
"""The home, ``<home>/nodes`` and each node root: passable (jobs of other accounts reach
their own attempt directories through them), never listable."""

HEAD_URL_FILE = "head.url"
"""``<home>/head.url``: the head's URL, rewritten at every start and left in place at exit, so
local node agents (``--head-file``) find a head restarted on another port."""
STOP_NODES_SIGNAL = signal.SIGUSR1
"""Stops the head node *and* its nodes (``mnp down --stop-nodes``); SIGTERM/SIGINT detach:
the head exits, the nodes' agents and their jobs keep running for the next head."""

_job_umask: int | None = None
"""The umask the head process had before :func:`make_process_private` (process-wide, as
the umask itself is)."""


ROOT_HOME = Path("/var/lib/mnp")
"""Root's default home: jobs of other accounts run under it (a root agent switches to them),
so every folder above their files must be passable — ``/root`` (0700) is not."""


def default_home() -> Path:
    """The state directory: ``$MNP_HOME``; else, for root, :data:`ROOT_HOME` (or
    ``/root/.mnp`` when an older head made one there); else ``~/.mnp``."""
    env = os.environ.get("MNP_HOME")
    if env:
        return Path(env).expanduser()
    own = Path.home() / ".mnp"
    if os.geteuid() == 0 and not own.exists():
        return ROOT_HOME
    return own


@dataclass(frozen=True, slots=True)
class LocalNodesConfig:
    """The embedded default compute environment: node agents on this machine."""

    name: str = "local"
    nodes: int = 4
    vcpus: int = 4
    memory_mib: int = 4096
    gpus: int = 0
    first_address: str | None = None
    """None: chosen at start by the node network (:func:`node_network_setting`): in
    ``mnp.providers.netns.NODE_SUBNET`` for namespace nodes, else ``127.0.0.2``."""


SCALE_IN_ENV = "MNP_SCALE_IN_AFTER_SECONDS"


def _seconds_setting(env: str, default: str) -> float:
    """``$env`` as seconds (``default`` when unset); raises ValueError naming the variable and
    the rule for anything but a finite number >= 0."""
    raw = os.environ.get(env, "").strip() or default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{env}={raw!r}: must be a number of seconds >= 0")
    return value


def _whole_setting(env: str, default: str, least: int, field: str) -> int:
    """``$env`` as a whole number >= ``least`` (``default`` when unset); raises ValueError
    naming the variable and the :class:`HeadConfig` field otherwise."""
    raw = os.environ.get(env, "").strip() or default
    try:
        value = int(raw)
    except ValueError:
        value = least - 1
    if value < least:
        raise ValueError(f"{env}={raw!r} ({field}): must be a whole number >= {least}")
    return value


def scale_in_setting() -> float:
    """``$MNP_SCALE_IN_AFTER_SECONDS`` (default 60); raises ValueError naming the variable
    and the rule for anything but a number >= 0."""
    return _seconds_setting(SCALE_IN_ENV, "60")


HOST_BRINGUP_ENV = "MNP_HOST_BRINGUP_THREADS"


def host_bringup_setting() -> int:
    """``$MNP_HOST_BRINGUP_THREADS`` (default 8); raises ValueError naming the variable and
    the field for anything but a whole number (:class:`HeadConfig` checks that it is >= 1)."""
    raw = os.environ.get(HOST_BRINGUP_ENV, "").strip() or "8"
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"{HOST_BRINGUP_ENV}={raw!r} (host_bringup_threads): must be a whole number >= 1"
        ) from None


MAX_ARRAY_SIZE_ENV = "MNP_MAX_ARRAY_SIZE"


def max_array_setting() -> int:
    """``$MNP_MAX_ARRAY_SIZE`` (default 10,000, AWS Batch's largest array); raises ValueError
    naming the variable and the field for anything but a whole number >= 2."""
    return _whole_setting(MAX_ARRAY_SIZE_ENV, "10000", 2, "max_array_size")


RESERVE_AFTER_ENV = "MNP_RESERVE_AFTER_SECONDS"


def reserve_after_setting() -> float:
    """``$MNP_RESERVE_AFTER_SECONDS`` (default 300); raises ValueError naming the variable
    and the rule for anything but a number >= 0."""
    return _seconds_setting(RESERVE_AFTER_ENV, "300")


DEFAULT_MEMORY_ENV = "MNP_DEFAULT_MEMORY_MIB"


def default_memory_setting() -> int:
    """``$MNP_DEFAULT_MEMORY_MIB`` (default 2048); raises ValueError naming the variable and
    the field for anything but a whole number >= 1."""
    return _whole_setting(DEFAULT_MEMORY_ENV, "2048", 1, "default_memory_mib")


EC2_ENV = "MNP_EC2"
EC2_HEAD_URL_ENV = "MNP_EC2_HEAD_URL"


def ec2_setting() -> bool:
    """``$MNP_EC2``: ``1``/``on`` makes MANAGED environments whose ``computeResources.type`` is
    EC2 or SPOT launch EC2 instances (default off: they run on local nodes, so AWS's
    tutorials work on one machine). Raises ValueError naming the variable otherwise."""
    value = os.environ.get(EC2_ENV, "").strip().lower()
    if value in ("", "0", "off", "false", "no"):
        return False
    if value in ("1", "on", "true", "yes"):
        return True
    raise ValueError(f"{EC2_ENV}={value!r}: must be 1/on or 0/off")


NODE_NETWORK_ENV = "MNP_NODE_NETWORK"
NODE_NETWORKS = ("auto", "namespace", "loopback")
"""``auto``: local nodes in network namespaces when the head runs as root with ``ip netns``,
else on loopback aliases (127.0.0.N); ``namespace`` / ``loopback`` force one."""


def node_network_setting() -> str:
    """``$MNP_NODE_NETWORK`` (default ``auto``); raises ValueError naming the variable and
    the allowed values for anything else."""
    value = os.environ.get(NODE_NETWORK_ENV, "").strip().lower() or "auto"
    if value not in NODE_NETWORKS:
        raise ValueError(f"{NODE_NETWORK_ENV}={value!r}: must be one of {', '.join(NODE_NETWORKS)}")
    return value


def network_kind(address: str) -> str:
    """How a local node with ``address`` is networked: ``loopback`` (127/8) or ``namespace``."""
    return "loopback" if address.startswith("127.") else "namespace"


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
    node_network: str = field(default_factory=lambda: node_network_setting())
    """How new local environments' nodes are networked (:data:`NODE_NETWORKS`)."""
    heartbeat_seconds: float = 2.0
    """How often agents poll; a node silent for ``lost_after_seconds`` is lost."""
    lost_after_seconds: float = 10.0
    lease_seconds: float | None = None
    """The agents' lease (``leaseSeconds``): a node that got no reply for this long stops its
    work (its fence); None: ``lost_after_seconds - 3``, or half of it when that is shorter
    (small test settings). Must be in ``(0, lost_after_seconds)``: the difference is the
    margin by which a cut-off node's work is stopped before the head retries it."""
    min_timeout_seconds: float = 60.0
    """Floor for ``timeout.attemptDurationSeconds`` (AWS: 60). Tests lower it."""
    kill_grace_seconds: float = 30.0
    """SIGTERM → SIGKILL grace on timeout and terminate (AWS: 30 s)."""
    scale_in_after_seconds: float = field(default_factory=lambda: scale_in_setting())
    """A MANAGED environment's node idle this long (no attempt on it) is drained and stopped,
    down to the environment's ``minvCpus``: ``$MNP_SCALE_IN_AFTER_SECONDS``, default 60.
    Tests lower it."""
    mpi_hang_seconds: float = 10.0
    """An MNP attempt whose MPI daemon or proxy ended on some node, while the main node's
    command keeps running this long afterwards, is taken as hung and failed (MPICH hangs when
    a rank exits without MPI_Finalize)."""
    host_bringup_threads: int = field(default_factory=lambda: host_bringup_setting())
    """How many SSH hosts of UNMANAGED environments are probed, installed and started at once
    (each bring-up waits on ssh, not on the head's CPU): ``$MNP_HOST_BRINGUP_THREADS``,
    default 8. 1 brings the hosts up one at a time (the benchmarks' baseline)."""
    max_array_size: int = field(default_factory=lambda: max_array_setting())
    """The most tasks an array job may have (``arrayProperties.size``;
    ``$MNP_MAX_ARRAY_SIZE``, default 10,000 as AWS Batch): Slurm sites raise their
    MaxArraySize, and so may a head."""

    reserve_after_seconds: float = field(default_factory=lambda: reserve_after_setting())
    """A RUNNABLE job that has waited this long and still does not fit reserves the nodes it
    will need (the ones to free up soonest); other work may use them only if it ends before
    they are needed: ``$MNP_RESERVE_AFTER_SECONDS``, default 300. Tests lower it."""
    default_memory_mib: int = field(default_factory=lambda: default_memory_setting())
    """The MEMORY (MiB) a job stating none reserves, at most its vCPUs' share of the node's
    memory (an environment's ``mnp:defaultMemoryMiB`` tag overrides it there):
    ``$MNP_DEFAULT_MEMORY_MIB``, default 2048."""

    ec2: bool = field(default_factory=lambda: ec2_setting())
    """EC2/SPOT environments launch real instances through boto3 (``$MNP_EC2``): region and
    credentials from boto3's own chain, endpoint from its ``AWS_ENDPOINT_URL_EC2``."""
    ec2_head_url: str | None = field(
        default_factory=lambda: os.environ.get(EC2_HEAD_URL_ENV, "").strip() or None
    )
    """The head's URL as its instances reach it (``$MNP_EC2_HEAD_URL``); None: its own."""

    def __post_init__(self) -> None:
        if self.host_bringup_threads < 1:
            raise ValueError(
                f"host_bringup_threads: must be at least 1, got {self.host_bringup_threads}"
            )
        lease = self.lease
        if not 0 < lease < self.lost_after_seconds:
            raise ValueError(
                f"lease_seconds: must be more than 0 and less than lost_after_seconds"
                f" ({self.lost_after_seconds}), got {lease}"
            )

    @property
    def lease(self) -> float:
        """The effective lease (:attr:`lease_seconds`, or its default)."""
        if self.lease_seconds is not None:
            return self.lease_seconds
        return max(self.lost_after_seconds - 3.0, self.lost_after_seconds / 2)

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
    def head_url_file(self) -> Path:
        return self.home / HEAD_URL_FILE

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
        write_private(tmp, json.dumps({"url": self.url, "pid": self.pid, "token": self.token}))
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
        write_private(path, token + "\n")
    return token


def write_private(path: Path, text: str) -> None:
    """Write (replace the content of) ``path``, mode 0600 whatever the umask or an earlier
    mode of the file was."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        f.write(text)


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each mode 0700 whatever the umask, and make
    ``path`` 0700 if it existed (parents that existed are left as they are); returns it."""
    missing: list[Path] = []
    p = path
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:  # made meanwhile by another of our processes
            pass
    os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask
    for d in missing[1:]:
        os.chmod(d, PRIVATE_DIR_MODE)
    return path


def head_home(home: Path) -> Path:
    """Create the head's home (and missing parents, 0700) if need be and make it 0711
    (:data:`TRAVERSE_DIR_MODE`: see the module docstring); returns it. What keeps its
    entries private is their own modes, not the home's."""
    private_dir(home)
    os.chmod(home, TRAVERSE_DIR_MODE)
    return home


SECURED_MARKER = ".private"
"""In a home: set once every file under it was made private (see :func:`secure_home`)."""


def secure_home(home: Path) -> None:
    """Make ``home`` private (see the module docstring), creating it if need be.

    The rule: the home, ``nodes/`` and each node root ``nodes/<id>`` are 0711 (passable,
    never listable); every other folder is 0700 and every file 0600 (0700 if it was
    executable). Fixes what an older version (or a user's editor) left readable: the home,
    the files and folders directly in it, everything under ``logs/`` and the node roots
    under ``nodes/`` with what lies directly in them. Attempt directories deeper down are
    not walked (they may be jobs' working directories, whose files are the job's own; the
    agent gives each its 0700 and its account). Symbolic links are never followed. Safe to
    call on every start: the walk below the home's own entries runs once per home (a
    marker file records it), since what the head and its agents create afterwards gets its
    private mode when created; later starts only fix the home and its direct entries, so
    start-up does not grow with history.
    """
    head_home(home)
    for entry in _entries(home):
        _fix(entry, TRAVERSE_DIR_MODE if entry.name == "nodes" else PRIVATE_DIR_MODE)
    marker = home / SECURED_MARKER
    if marker.exists():
        return
    _fix_below(home)
    write_private(marker, "the files under this home were made private\n")


def _fix_below(home: Path) -> None:
    logs = home / "logs"
    if logs.is_dir() and not logs.is_symlink():
        for parent, dirs, files in os.walk(logs):
            for name in dirs + files:
                _fix(Path(parent) / name)
    nodes = home / "nodes"
    if nodes.is_dir() and not nodes.is_symlink():
        for root in _entries(nodes):
            _fix(root, TRAVERSE_DIR_MODE)
            if root.is_dir() and not root.is_symlink():
                for entry in _entries(root):
                    _fix(entry)


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _fix(path: Path, dir_mode: int = PRIVATE_DIR_MODE) -> None:
    """``dir_mode`` for a folder, 0600 for a file; links and others' files are left alone."""
    try:
        st = os.lstat(path)
        if st.st_uid != os.geteuid():
            return
        if stat.S_ISDIR(st.st_mode):
            want = dir_mode
        elif stat.S_ISREG(st.st_mode):
            # keep the owner's execute bit: a script (a job's srun shim) stays runnable
            want = PRIVATE_FILE_MODE | (st.st_mode & stat.S_IXUSR)
        else:
            return
        if stat.S_IMODE(st.st_mode) != want:
            os.chmod(path, want)
    except OSError:  # gone meanwhile (a job's file): nothing left to protect
        pass


def make_process_private() -> None:
    """Set this process's umask to 077, so every file and folder it creates from now on is
    private, also those made by code that does not set modes itself (SQLite's files, logs).
    Remembers the umask it replaced for :func:`job_umask`. Call once, at the head's start."""
    global _job_umask
    previous = os.umask(PRIVATE_UMASK)
    if _job_umask is None:
        _job_umask = previous


def job_umask() -> int | None:
    """The umask processes started for jobs (local node agents) get: the one the head was
    started with, so jobs make files as their user expects. None: the head never changed
    its own (start children as they are)."""
    return _job_umask


GC_THRESHOLDS = (50_000, 20, 100)
"""The head's garbage-collector thresholds (Python's defaults: 700, 10, 10). A head holds tens
of thousands of live jobs that make almost no reference cycles, and at the defaults full
collections over them were a tenth of a busy head's time (``python -m mnp.sim`` at 10,000
nodes: 0.97 → 0.32 s of collection in 10 virtual seconds)."""


def tune_gc() -> None:
    """Collect as :data:`GC_THRESHOLDS` says (the head and the simulator, at start)."""
    gc.set_threshold(*GC_THRESHOLDS)
