# ~465 lines: each head↔node message with its own wire parsing, and the protocol's contract.
"""Messages between the head node and node agents (plain data; no HTTP here).

The agent dials the head over HTTP with JSON bodies:

``POST /internal/v1/agents/register``  body :class:`Register` → ``{"heartbeatSeconds": float,
"leaseSeconds": float, "sessionEpoch": int}``
    Announce a node and start a new *session*: every successful register increments the
    node's ``sessionEpoch`` (persisted), which every later poll and report carries
    (``epoch``). A node the head declared LOST may register again (same id, same secret) and
    becomes ACTIVE as a new session; a STOPPED one is answered 410 (the operator stopped it).
``POST /internal/v1/agents/poll``      body :class:`Poll` → :class:`PollReply`
    Heartbeat and work fetch. The head holds the request open up to ``waitSeconds`` and
    answers as soon as it has assignments or kills for the node. Answers 404 with
    ``{"__type": "UnknownNode"}`` when the head does not know the node (the agent then
    registers again) and 409 ``{"__type": "StaleSession"}`` when the poll's ``epoch`` is not
    the node's current session or the node is LOST or STOPPED (nothing is applied; the agent
    kills what it runs, which the head has failed already, and registers again).
``POST /internal/v1/agents/report``    body :class:`Report` → ``{"accepted": int}``
    Attempt events, in order. The agent keeps an event until a report carrying it is
    answered 200, so events survive a head restart; the head ignores duplicates. A report of
    another session than the node's current one (or of a LOST/STOPPED node) is answered 409
    ``StaleSession`` with nothing applied; the agent drops it.

Leases: every register and poll reply carries ``leaseSeconds``. The agent's lease ends that
long after it *sent* the call that got the reply; past it the node's fence stops the work
(:mod:`launcher.fence`). The head declares a node lost only after ``lost_after_seconds``
(longer than the lease) of silence counted from when it *received* the node's last call, so
a node's work is stopped at least ``lost_after - lease`` seconds before the head retries it.

Every request carries the header ``X-Mnp-Token`` when the head has a token configured, and
the node's own credential: its first ``register`` the one-time join token the head
minted when it launched the node (header ``X-Mnp-Join-Token``; the agent finds it in
``$MNP_JOIN_TOKEN``), answered with the node's secret (``"nodeSecret"`` in the reply); every
later call that secret (header ``X-Mnp-Node-Secret``). A call without the right credential,
or a report with an event of another node's attempt, is answered 403
``{"__type": "AccessDeniedException"}`` and changes nothing; a re-registration that changes
the node's compute environment, address, capacity or SSH host key is answered 409 naming the
field (remove the node to change them). A node of an UNMANAGED environment joins with the
head's token alone (nobody launched it to mint a join token) and gets its secret likewise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from mnp.errors import FieldError
from mnp.spec.containers import ContainerRun
from mnp.spec.sharedfs import SharedFilesystem
from mnp.spec.wirefields import SAFE_INT, Fields

REGISTER_PATH = "/internal/v1/agents/register"
BUNDLE_PATH = "/internal/v1/agent-bundle"
"""Where an EC2 instance fetches the agent bundle (``GET``; :mod:`mnp.ec2.userdata`)."""
POLL_PATH = "/internal/v1/agents/poll"
REPORT_PATH = "/internal/v1/agents/report"
TOKEN_HEADER = "X-Mnp-Token"
NODE_SECRET_HEADER = "X-Mnp-Node-Secret"
JOIN_TOKEN_HEADER = "X-Mnp-Join-Token"
JOIN_TOKEN_ENV = "MNP_JOIN_TOKEN"
"""Where a launched agent finds its join token (the environment, never its command line)."""
NODE_SECRET_KEY = "nodeSecret"
"""The register reply's field carrying the node's secret (only when it was just issued)."""

EventKind = Literal["started", "log", "exited", "start_failed", "session_started", "session_exited"]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

# What the head accepts from an agent (checked by the ``from_wire`` of Register, Poll, Report).
NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,255}")
NAME_OR_ARN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
ADDRESS_RE = re.compile(r"[A-Za-z0-9.:\[\]%_-]{1,255}")
INTERFACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
"""A Linux network interface name (at most 15 bytes; no ``/``, ``:`` or space)."""
"""A host name or an IPv4/IPv6 address: it goes into hostfiles and SSH configuration."""
ATTEMPT_ID_RE = re.compile(r"[^\x00-\x1f\x7f]+/[1-9][0-9]{0,5}")
"""``<jobId>/<attempt>`` (:func:`attempt_id`)."""
ID_MOST = 1024
COUNT_MOST = 1 << 20
PID_MOST = 2**31 - 1
RUNNING_MOST = 100_000
EVENTS_MOST = 100_000
REASON_MOST = 64 * 1024
NOTICE_MOST = 256
SPOT_NOTICES_KEY = "spotNotices"
"""In a register reply: the node is an EC2 instance; its agent watches the metadata service
for a Spot interruption notice and sends it in :attr:`Poll.notice`."""
DATA_MOST = 64 * 1024 * 1024


WIRING_PLACEHOLDER = "@MNP_WIRING@"
"""In :class:`Wiring` files, environment values and the command of an assignment that has
wiring: the node's absolute wiring directory."""
PYTHON_PLACEHOLDER = "@MNP_PYTHON@"
"""As an element of the command of an assignment that has wiring: the agent's own Python."""


def attempt_id(job_id: str, attempt: int) -> str:
    """The id of one attempt of one job: ``<jobId>/<attempt number, 1-based>``."""
    return f"{job_id}/{attempt}"


@dataclass(frozen=True, slots=True)
class Wiring:
    """What one node of a multi-node parallel (MNP) job attempt needs besides its command.

    The agent writes ``files`` (mode 0600) into the attempt's wiring directory
    ``<workdir>/.mnp/``, replacing :data:`WIRING_PLACEHOLDER` in their text and in the
    assignment's environment values with that directory's absolute path. While the attempt
    lives, the node's SSH server accepts ``authorized_key`` (and only for this attempt);
    commands arriving over SSH with that key run with ``ssh_environment`` (placeholder
    substituted) over the node's own variables. When the attempt ends the key is revoked and
    every SSH session it opened is killed.
    """

    authorized_key: str
    """OpenSSH public key line of the job's key pair."""
    files: dict[str, str]
    ssh_environment: dict[str, str]
    hold: bool = False
    """Run no command: serve SSH for the job until killed (a child node in mpirun mode).
    The agent reports ``started`` at once; killed, it reports ``exited`` with code 0."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "authorizedKey": self.authorized_key,
            "files": dict(self.files),
            "sshEnvironment": dict(self.ssh_environment),
            "hold": self.hold,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Wiring:
        return cls(
            authorized_key=str(d["authorizedKey"]),
            files={str(k): str(v) for k, v in d.get("files", {}).items()},
            ssh_environment={str(k): str(v) for k, v in d.get("sshEnvironment", {}).items()},
            hold=bool(d.get("hold", False)),
        )


SCRIPT_PLACEHOLDER = "@MNP_SCRIPT@"
"""In the command of an attempt with a batch script: where the script's path goes (without
it, the script runs with the command as its arguments)."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """One attempt the head asks a node to run."""

    attempt_id: str
    job_id: str
    attempt: int
    command: list[str]
    """argv; executed directly, never through a shell."""
    environment: dict[str, str]
    """Added to the agent's own environment (these win)."""
    timeout_seconds: float | None
    """Per-attempt limit, measured from the process start; None means no limit."""
    kill_grace_seconds: float
    """Time between SIGTERM and SIGKILL on timeout or kill."""
    workdir: str | None = None
    """Working directory; None means ``<agent root>/jobs/<safe job id>.<attempt>``."""
    wiring: Wiring | None = None
    """Set for the nodes of a multi-node parallel job."""
    container: ContainerRun | None = None
    """Set when the job names an image: run in a Docker container instead of a process."""
    stdout_path: str | None = None
    """Also write the output here (absolute, on the node); None: only the attempt's logs."""
    stderr_path: str | None = None
    """Likewise for stderr; None with ``stdout_path`` set: stderr goes to that same file."""
    script: str | None = None
    """A batch script: written to a private file (mode 0700) and run with ``command`` as its
    arguments; removed after the attempt."""
    run_as: str | None = None
    """The account the attempt runs as on the node (its submitter, or the definition's
    ``user``); an agent that can switch users (root) runs it as that account, one that
    cannot runs it as itself. None: the agent's own account."""
    shared_filesystem: SharedFilesystem | None = None
    """The compute environment's shared filesystem: a node with a namespace binds its
    ``source`` at its ``mountPath`` for the attempt (and its gang's SSH sessions)."""
    credentials: dict[str, str] | None = field(default=None, repr=False)
    """The attempt's own credentials (:mod:`mnp.scheduler.jobkeys`: ``accessKeyId``,
    ``secretAccessKey``, ``sessionToken``, ``nativeToken``), which the agent serves to the
    job as ECS serves a task's role; valid while the attempt runs."""

    def to_wire(self) -> dict[str, Any]:
        out = {
            "attemptId": self.attempt_id,
            "jobId": self.job_id,
            "attempt": self.attempt,
            "command": list(self.command),
            "environment": dict(self.environment),
            "timeoutSeconds": self.timeout_seconds,
            "killGraceSeconds": self.kill_grace_seconds,
            "workdir": self.workdir,
        }
        if self.wiring is not None:
            out["wiring"] = self.wiring.to_wire()
        if self.container is not None:
            out["container"] = self.container.to_wire()
        for key, value in (
            ("stdoutPath", self.stdout_path),
            ("stderrPath", self.stderr_path),
            ("script", self.script),
            ("runAs", self.run_as),
        ):
            if value is not None:
                out[key] = value
        if self.shared_filesystem is not None:
            out["sharedFilesystem"] = self.shared_filesystem.to_doc()
        if self.credentials is not None:
            out["credentials"] = dict(self.credentials)
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Assignment:
        return cls(
            attempt_id=str(d["attemptId"]),
            job_id=str(d["jobId"]),
            attempt=int(d["attempt"]),
            command=[str(a) for a in d["command"]],
            environment={str(k): str(v) for k, v in d["environment"].items()},
            timeout_seconds=None if d.get("timeoutSeconds") is None else float(d["timeoutSeconds"]),
            kill_grace_seconds=float(d["killGraceSeconds"]),
            workdir=d.get("workdir"),
            wiring=Wiring.from_wire(d["wiring"]) if d.get("wiring") else None,
            container=ContainerRun.from_wire(d["container"]) if d.get("container") else None,
            stdout_path=d.get("stdoutPath"),
            stderr_path=d.get("stderrPath"),
            script=d.get("script"),
            run_as=d.get("runAs"),
            shared_filesystem=SharedFilesystem.from_doc(d["sharedFilesystem"])
            if d.get("sharedFilesystem")
            else None,
            credentials={str(k): str(v) for k, v in d["credentials"].items()}
            if isinstance(d.get("credentials"), dict)
            else None,
        )


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop an attempt: SIGTERM to its process group, SIGKILL after the grace period."""

    attempt_id: str
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"attemptId": self.attempt_id, "reason": self.reason}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Kill:
        return cls(attempt_id=str(d["attemptId"]), reason=str(d["reason"]))


@dataclass(frozen=True, slots=True)
class Ready:
    """Every other node of this (main-node) attempt's gang has started: the agent creates the
    file ``ready`` in the attempt's wiring directory, which the main node's launcher waits for."""

    attempt_id: str

    def to_wire(self) -> dict[str, Any]:
        return {"attemptId": self.attempt_id}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Ready:
        return cls(attempt_id=str(d["attemptId"]))


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to an attempt on a node.

    - ``started``: the process exists (``pid`` set).
    - ``log``: ``data`` (text, UTF-8 decoded incrementally) from ``stream`` starting at byte
      ``offset`` of that stream; sent while running and before ``exited``.
    - ``exited``: the process ended; ``exit_code`` is its code, 128+N when killed by signal N;
      ``timed_out`` when the agent killed it for its timeout; ``reason`` says why the agent
      killed it (the kill's reason, or ``"Timeout"``), else None.
    - ``start_failed``: the process could not be started; ``reason`` says why.
    - ``session_started`` / ``session_exited``: a command that reached this node over SSH for
      the attempt (an MPI daemon or proxy) started, or ended by itself with ``exit_code``;
      ``reason`` is the command. MPI launchers can hang when a rank dies without finalising:
      one node's proxy ends while the others' stay; the head node uses these to notice.
    """

    attempt_id: str
    kind: EventKind
    time_ms: int
    seq: int = 0
    """Per-agent sequence number, increasing; lets the head drop duplicates."""
    pid: int | None = None
    exit_code: int | None = None
    timed_out: bool = False
    reason: str | None = None
    stream: Literal["stdout", "stderr"] | None = None
    offset: int = 0
    data: str = ""

    def to_wire(self) -> dict[str, Any]:
        # Drop unset fields. Not ``v not in (None, "", False)``: 0 == False, which would drop
        # ``exit_code`` 0 (a successful exit would read back as None).
        # Every field is a scalar: read them directly (asdict's deep copy cost ~10x as much).
        return {
            k: v
            for k in _EVENT_FIELDS
            if not ((v := getattr(self, k)) is None or v is False or v == "") or k == "seq"
        }

    @classmethod
    def from_wire(cls, d: Any, path: str = "", errors: list[FieldError] | None = None) -> Event:
        """One event as an agent sends it, every field checked (problems go to ``errors``
        when given, else raise :class:`~mnp.errors.InvalidInput`)."""
        f = Fields(d, path, errors)
        kind = f.text("kind", choices=EVENT_KINDS, default="started")
        stream = f.text("stream", required=kind == "log", choices=("stdout", "stderr"))
        event = cls(
            attempt_id=f.text("attempt_id", most=ID_MOST, pattern=ATTEMPT_ID_RE) or "",
            kind=kind,  # type: ignore[arg-type]  # one of EVENT_KINDS, checked above
            time_ms=f.integer("time_ms", low=0, high=SAFE_INT) or 0,
            seq=f.integer("seq", low=0, high=SAFE_INT, default=0) or 0,
            pid=f.integer("pid", low=0, high=PID_MOST, required=False),
            exit_code=f.integer("exit_code", low=-(2**31), high=2**31 - 1, required=False),
            timed_out=f.flag("timed_out"),
            reason=f.text("reason", required=False, most=REASON_MOST, control_ok=True),
            stream=stream,  # type: ignore[arg-type]  # stdout, stderr or None, checked above
            offset=f.integer("offset", low=0, high=SAFE_INT, default=0) or 0,
            data=f.text("data", required=False, most=DATA_MOST, control_ok=True, default="") or "",
        )
        if errors is None:
            f.done()
        return event


INSTANCE_ID_RE = re.compile(r"i-[0-9a-f]{8,17}")
INSTANCE_TYPE_RE = re.compile(r"[a-z0-9-]{1,32}\.[a-z0-9-]{1,32}")
ZONE_RE = re.compile(r"[a-z0-9-]{1,64}")


@dataclass(frozen=True, slots=True)
class InstanceIdentity:
    """Who an EC2 node is, as its metadata service says (``--ec2`` agents)."""

    instance_id: str
    instance_type: str
    availability_zone: str
    placement_group: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "instanceId": self.instance_id,
            "instanceType": self.instance_type,
            "availabilityZone": self.availability_zone,
            "placementGroup": self.placement_group,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> InstanceIdentity:
        return cls(
            instance_id=f.text("instanceId", pattern=INSTANCE_ID_RE) or "",
            instance_type=f.text("instanceType", pattern=INSTANCE_TYPE_RE) or "",
            availability_zone=f.text("availabilityZone", pattern=ZONE_RE) or "",
            placement_group=f.text("placementGroup", required=False, most=255),
        )


def _instance(f: Fields | None) -> InstanceIdentity | None:
    return None if f is None else InstanceIdentity.from_fields(f)


@dataclass(frozen=True, slots=True)
class Register:
    node_id: str
    compute_environment: str
    address: str
    vcpus: int
    memory_mib: int
    gpus: int
    pid: int
    running: list[str] = field(default_factory=list)
    """Attempt ids the agent is running now (non-empty after a head restart)."""
    ssh_port: int | None = None
    """Port of the node's SSH server on ``address`` (None: the node serves no SSH)."""
    ssh_host_key: str | None = None
    """The SSH server's public host key line (``ssh-ed25519 AAAA…``), for known_hosts."""
    interface: str | None = None
    """The interface holding ``address`` on the node (None: none does, as for a loopback
    alias); a gang whose nodes all name the same one pins MPI, NCCL and gloo to it."""
    instance: InstanceIdentity | None = None
    """An EC2 node's instance, from its metadata service."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "instance": self.instance.to_wire() if self.instance is not None else None,
            "interface": self.interface,
            "sshPort": self.ssh_port,
            "sshHostKey": self.ssh_host_key,
            "nodeId": self.node_id,
            "computeEnvironment": self.compute_environment,
            "address": self.address,
            "vcpus": self.vcpus,
            "memoryMiB": self.memory_mib,
            "gpus": self.gpus,
            "pid": self.pid,
            "running": list(self.running),
        }

    @classmethod
    def from_wire(cls, d: Any) -> Register:
        """Every field checked; raises :class:`~mnp.errors.InvalidInput` naming each bad one."""
        f = Fields(d)
        r = cls(
            node_id=f.text("nodeId", pattern=NODE_ID_RE) or "",
            compute_environment=f.text("computeEnvironment", most=ID_MOST, pattern=NAME_OR_ARN_RE)
            or "",
            address=f.text("address", pattern=ADDRESS_RE) or "",
            vcpus=f.integer("vcpus", low=0, high=COUNT_MOST) or 0,
            memory_mib=f.integer("memoryMiB", low=0, high=SAFE_INT) or 0,
            gpus=f.integer("gpus", low=0, high=COUNT_MOST, default=0) or 0,
            pid=f.integer("pid", low=0, high=PID_MOST, default=0) or 0,
            running=f.texts(
                "running", most_items=RUNNING_MOST, most=ID_MOST, pattern=ATTEMPT_ID_RE
            ),
            ssh_port=f.integer("sshPort", low=0, high=65535, required=False),
            ssh_host_key=f.text("sshHostKey", required=False, most=16384),
            interface=f.text("interface", required=False, pattern=INTERFACE_RE),
            instance=_instance(f.obj("instance")),
        )
        f.done()
        return r


@dataclass(frozen=True, slots=True)
class Poll:
    node_id: str
    running: list[str]
    """Attempt ids the agent runs, and those whose last event it has not delivered yet."""
    wait_seconds: float
    ready: list[str] = field(default_factory=list)
    """Attempt ids among ``running`` the agent has applied a :class:`Ready` to (the head
    re-sends a Ready until its attempt is listed here)."""
    epoch: int = 0
    """The session (``sessionEpoch`` of the register reply) the poll belongs to."""
    notice: str | None = None
    """The node will go away soon (an EC2 Spot interruption notice, as its metadata service
    gave it): the head drains it."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "nodeId": self.node_id,
            "running": list(self.running),
            "waitSeconds": self.wait_seconds,
            "ready": list(self.ready),
            "epoch": self.epoch,
        }
        if self.notice is not None:
            out["notice"] = self.notice
        return out

    @classmethod
    def from_wire(cls, d: Any) -> Poll:
        """Every field checked; raises :class:`~mnp.errors.InvalidInput` naming each bad one."""
        f = Fields(d)
        p = cls(
            node_id=f.text("nodeId", pattern=NODE_ID_RE) or "",
            running=f.texts(
                "running", most_items=RUNNING_MOST, most=ID_MOST, pattern=ATTEMPT_ID_RE
            ),
            wait_seconds=f.number("waitSeconds", low=0.0, high=3600.0, default=0.0),
            ready=f.texts("ready", most_items=RUNNING_MOST, most=ID_MOST, pattern=ATTEMPT_ID_RE),
            epoch=f.integer("epoch", low=0, high=SAFE_INT, default=0) or 0,
            notice=f.text("notice", required=False, most=NOTICE_MOST),
        )
        f.done()
        return p


@dataclass(frozen=True, slots=True)
class PollReply:
    assignments: list[Assignment] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    ready: list[Ready] = field(default_factory=list)
    lease_seconds: float | None = None
    """The lease this reply grants (from the poll's send time); None: no lease (older head)."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "assignments": [a.to_wire() for a in self.assignments],
            "kills": [k.to_wire() for k in self.kills],
            "ready": [r.to_wire() for r in self.ready],
        }
        if self.lease_seconds is not None:
            out["leaseSeconds"] = self.lease_seconds
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> PollReply:
        return cls(
            assignments=[Assignment.from_wire(a) for a in d.get("assignments", [])],
            kills=[Kill.from_wire(k) for k in d.get("kills", [])],
            ready=[Ready.from_wire(r) for r in d.get("ready", [])],
            lease_seconds=None if d.get("leaseSeconds") is None else float(d["leaseSeconds"]),
        )


_EVENT_FIELDS = tuple(f.name for f in fields(Event))


@dataclass(frozen=True, slots=True)
class Report:
    node_id: str
    events: list[Event]
    epoch: int = 0
    """The session the events were emitted in (a stale one is refused whole)."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "events": [e.to_wire() for e in self.events],
            "epoch": self.epoch,
        }

    @classmethod
    def from_wire(cls, d: Any) -> Report:
        """Every field of every event checked; raises :class:`~mnp.errors.InvalidInput`
        naming each bad one (``events[3].stream``), so no event of a bad report is applied."""
        f = Fields(d)
        node_id = f.text("nodeId", pattern=NODE_ID_RE) or ""
        events = [
            Event.from_wire(e.body, e.path, f.errors)
            for e in f.objects("events", most_items=EVENTS_MOST)
        ]
        epoch = f.integer("epoch", low=0, high=SAFE_INT, default=0) or 0
        f.done()
        return cls(node_id=node_id, events=events, epoch=epoch)
