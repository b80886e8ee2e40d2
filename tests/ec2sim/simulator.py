"""Instances of a moto server brought to life, the way cloud-init brings up a real one.

moto records instances and runs nothing. A :class:`Simulator` watches DescribeInstances and,
for every instance that is ``running`` with a private address in its subnet, makes:

- a network namespace (:class:`mnp.providers.netns.Network` of the simulator's own tag) whose
  ``eth0`` holds the instance's ``PrivateIpAddress``, on the bridge of the simulator's hub,
  so instances reach each other by address and nothing appears in the machine's namespace;
- the instance's metadata service (:class:`tests.ec2sim.imds.ImdsServer`) on
  ``169.254.169.254:80`` inside it (that address on the namespace's ``lo``), describing it
  as moto does, its user data from DescribeInstanceAttribute;
- a forwarder (:mod:`tests.ec2sim.forward`) so ``http://127.0.0.1:<head_port>`` inside it
  reaches the head node listening on loopback in the machine's namespace;
- a run of its user data: every ``text/x-shellscript`` part of a MIME multi-part (or the
  whole user data when it is one script), in order, as root, inside the namespace, output to
  :attr:`SimInstance.log`; ``mount`` on the PATH is a stub recording its argv
  (:meth:`SimInstance.mounts`), since no filesystem can be mounted here.

When moto says an instance is no longer pending or running (TerminateInstances), every
process in its namespace is killed by PID, its servers stop and the namespace goes; closing
the simulator does that for every instance, then removes the hub — also when something
failed on the way. :meth:`Simulator.interrupt` is a spot interruption: the notice at once,
TerminateInstances some seconds later.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from types import TracebackType
from typing import Any

from launcher.netns import socket_in
from mnp.providers import netns
from mnp.providers.netns import Network, NodeNamespace
from tests.ec2sim.forward import Forwarder
from tests.ec2sim.imds import ImdsServer, MetadataDoc

IMDS_ADDRESS = "169.254.169.254"
LIVE_STATES = ("pending", "running")
SPOT_WARNING = timedelta(minutes=2)
_KILL_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Script:
    """One script of an instance's user data, as cloud-init would run it."""

    name: str
    content: bytes

    def argv(self, path: Path) -> list[str]:
        """Run by its ``#!`` line when it has one (as cloud-init runs it), else by bash."""
        return [str(path)] if self.content.startswith(b"#!") else ["bash", str(path)]


def scripts_of(user_data: bytes) -> list[Script]:
    """The scripts cloud-init would run from ``user_data`` (gzip-compressed or not): the
    ``text/x-shellscript`` parts of a MIME multi-part in order, the whole of a ``#!`` script,
    nothing for anything else (cloud-config, empty)."""
    if user_data.startswith(b"\x1f\x8b"):
        user_data = gzip.decompress(user_data)
    if user_data.startswith(b"#!"):
        return [Script("part-001", user_data)]
    if not user_data.lstrip().startswith(b"Content-Type:") and b"MIME-Version:" not in user_data:
        return []
    msg = message_from_bytes(user_data)
    out: list[Script] = []
    for part in msg.walk():
        if part.get_content_type() != "text/x-shellscript":
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            out.append(Script(f"part-{len(out) + 1:03d}", payload))
    return out


@dataclass
class SimInstance:
    """One simulated instance. ``exit_codes`` fills in as its scripts end; ``finished`` is set
    once all ran (or the instance went)."""

    instance_id: str
    address: str
    directory: Path
    """Its files: ``cloud-init-output.log``, ``mounts.jsonl``, ``scripts/``, ``bin/``."""
    node: NodeNamespace | None = None
    imds: ImdsServer | None = None
    forwarder: Forwarder | None = None
    exit_codes: list[int] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _runner: threading.Thread | None = None

    @property
    def namespace(self) -> str:
        if self.node is None:
            raise RuntimeError(f"{self.instance_id} has no namespace")
        return self.node.namespace

    @property
    def log(self) -> Path:
        return self.directory / "cloud-init-output.log"

    @property
    def mount_log(self) -> Path:
        return self.directory / "mounts.jsonl"

    def mounts(self) -> list[list[str]]:
        """The argv (without ``mount``) of every ``mount`` its scripts ran, in order."""
        if not self.mount_log.exists():
            return []
        return [json.loads(line) for line in self.mount_log.read_text().splitlines() if line]


MOUNT_STUB = """#!/bin/sh
# ec2sim: no filesystem can be mounted here; record the call and succeed
exec {python} -c 'import json, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(sys.argv[2:]) + "\\n")' {log} "$@"
"""


class Simulator:
    """Simulates the instances of ``ec2`` (a boto3 EC2 client of a moto server) whose private
    address lies in ``cidr`` (the test's subnet: private, e.g. ``10.210.0.0/24``; instances
    elsewhere are left alone), from ``__enter__`` until ``__exit__``, polling every
    ``interval`` seconds. Files go under ``workdir`` (kept) or a temporary directory (removed
    on exit).

    :attr:`instances` holds the instances simulated now (by id); :attr:`errors` what failed
    in the watcher thread (``__exit__`` raises if anything did and nothing else is raised).
    """

    def __init__(
        self,
        ec2: Any,
        head_port: int,
        cidr: str,
        *,
        interval: float = 0.2,
        workdir: Path | None = None,
        tag: str | None = None,
    ) -> None:
        self.ec2 = ec2
        self.head_port = head_port
        self.subnet = ipaddress.IPv4Network(cidr)
        self.interval = interval
        self.tag = tag or "e" + secrets.token_hex(3)
        self.network = Network(self.tag, self.subnet)
        self.instances: dict[str, SimInstance] = {}
        self.errors: list[BaseException] = []
        self._workdir = workdir
        self._own_dir = workdir is None
        self._seen: set[str] = set()
        self._terminate_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("the simulator is not running")
        return self._workdir

    def __enter__(self) -> Simulator:
        if not netns.available():
            raise RuntimeError("the EC2 simulator needs root and ip netns")
        try:
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="mnp-ec2sim-"))
            self.network.create()
            self._thread = threading.Thread(target=self._watch, name="ec2sim", daemon=True)
            self._thread.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is None and self.errors:
            raise RuntimeError(f"the EC2 simulator failed: {self.errors!r}") from self.errors[0]

    def close(self) -> None:
        """Stop watching, take down every instance, remove the hub (safe to call twice)."""
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join(timeout=30)
                self._thread = None
        finally:
            try:
                for iid in list(self.instances):
                    try:
                        self._teardown(iid)
                    except Exception as e:
                        self.errors.append(e)
            finally:
                self.network.destroy()
                if self._own_dir and self._workdir is not None:
                    shutil.rmtree(self._workdir, ignore_errors=True)
                    self._workdir = None

    def interrupt(self, instance_id: str, after_seconds: float) -> None:
        """A spot interruption of a simulated instance: its metadata service serves the notice
        (terminate, two minutes from now) at once; moto terminates it ``after_seconds`` later
        (then it is taken down like any terminated instance)."""
        with self._lock:
            inst = self.instances.get(instance_id)
            if inst is None or inst.imds is None:
                raise ValueError(f"{instance_id} is not a simulated instance")
            when = datetime.now(UTC).replace(microsecond=0) + SPOT_WARNING
            inst.imds.set_spot_notice(
                {"action": "terminate", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
            )
            self._terminate_at[instance_id] = time.monotonic() + after_seconds

    def wait_simulated(self, instance_ids: list[str], timeout: float = 20.0) -> list[SimInstance]:
        """The instances once all are simulated; AssertionError at the deadline."""
        found: list[SimInstance] = self._wait(
            f"simulated instances {instance_ids}",
            lambda: (
                [self.instances[i] for i in instance_ids]
                if all(i in self.instances for i in instance_ids)
                else None
            ),
            timeout,
        )
        return found

    def wait_user_data(self, instance_id: str, timeout: float = 20.0) -> list[int]:
        """The exit codes of the instance's scripts once all ran."""
        inst = self.wait_simulated([instance_id], timeout)[0]
        done: tuple[list[int]] = self._wait(
            f"the user data of {instance_id}",
            lambda: (list(inst.exit_codes),) if inst.finished.is_set() else None,
            timeout,
        )
        return done[0]

    def wait_gone(self, instance_id: str, timeout: float = 20.0) -> None:
        """Until the instance was simulated and has been taken down."""
        self._wait(
            f"{instance_id} taken down",
            lambda: instance_id in self._seen and instance_id not in self.instances,
            timeout,
        )

    def _wait(self, what: str, check: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.errors:
                raise AssertionError(f"the EC2 simulator failed: {self.errors!r}")
            with self._lock:
                got = check()
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    # the watcher thread

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as e:
                self.errors.append(e)
            self._stop.wait(self.interval)

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [i for i, at in self._terminate_at.items() if at <= now]
            for i in due:
                del self._terminate_at[i]
        if due:
            self.ec2.terminate_instances(InstanceIds=due)
        states: dict[str, dict[str, Any]] = {}
        for page in self.ec2.get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for inst in reservation["Instances"]:
                    states[inst["InstanceId"]] = inst
        for iid in list(self.instances):
            if states.get(iid, {}).get("State", {}).get("Name") not in LIVE_STATES:
                self._teardown(iid)
        for iid, inst in states.items():
            if self._stop.is_set():
                return
            address = inst.get("PrivateIpAddress")
            if (
                inst["State"]["Name"] == "running"
                and iid not in self._seen
                and address
                and ipaddress.IPv4Address(address) in self.subnet
            ):
                self._seen.add(iid)
                self._boot(inst)

    def _boot(self, described: dict[str, Any]) -> None:
        iid, address = described["InstanceId"], described["PrivateIpAddress"]
        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        encoded = attr.get("UserData", {}).get("Value")
        user_data = base64.b64decode(encoded) if encoded else b""
        placement = described.get("Placement", {})
        inst = SimInstance(iid, address, self.workdir / iid)
        with self._lock:
            self.instances[iid] = inst
        try:
            inst.directory.mkdir(parents=True, exist_ok=True)
            inst.node = self.network.add_node(netns.node_name(iid), address)
            ns = inst.node.namespace
            subprocess.run(
                ["ip", "-n", ns, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo"],
                check=True, capture_output=True, timeout=10,
            )  # fmt: skip
            doc = MetadataDoc(
                instance_id=iid,
                instance_type=described.get("InstanceType", ""),
                local_ipv4=address,
                availability_zone=placement.get("AvailabilityZone", ""),
                placement_group=placement.get("GroupName") or None,
                user_data=user_data,
            )
            inst.imds = ImdsServer(doc, sock=socket_in(ns, IMDS_ADDRESS, 80)).start()
            inst.forwarder = Forwarder(ns, self.head_port).start()
            scripts = scripts_of(user_data)
            inst._runner = threading.Thread(
                target=self._run_user_data, args=(inst, scripts), name=f"ec2sim-{iid}", daemon=True
            )
            inst._runner.start()
        except BaseException:
            self._teardown(iid)
            raise

    def _run_user_data(self, inst: SimInstance, scripts: list[Script]) -> None:
        try:
            bin_dir = inst.directory / "bin"
            scripts_dir = inst.directory / "scripts"
            bin_dir.mkdir(exist_ok=True)
            scripts_dir.mkdir(exist_ok=True)
            stub = bin_dir / "mount"
            stub.write_text(
                MOUNT_STUB.format(
                    python=shlex.quote(sys.executable), log=shlex.quote(str(inst.mount_log))
                )
            )
            stub.chmod(0o755)
            env = {
                "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
                "HOME": "/root",
                "LANG": "C.UTF-8",
            }
            with inst.log.open("ab", buffering=0) as log:
                for script in scripts:
                    if inst._stopping.is_set():
                        return
                    path = scripts_dir / script.name
                    path.write_bytes(script.content)
                    path.chmod(0o700)
                    log.write(f"ec2sim: running {script.name}\n".encode())
                    proc = subprocess.Popen(
                        ["ip", "netns", "exec", inst.namespace, *script.argv(path)],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        env=env, cwd="/",
                    )  # fmt: skip
                    code = proc.wait()
                    inst.exit_codes.append(code)
                    log.write(f"ec2sim: {script.name} exited with {code}\n".encode())
        except Exception as e:
            self.errors.append(e)
        finally:
            inst.finished.set()

    def _teardown(self, iid: str) -> None:
        """Kill what runs in the instance's namespace, stop its servers, remove it; each step
        runs even when one before it failed. It leaves :attr:`instances` last, so an instance
        not listed there any more is gone entirely."""
        with self._lock:
            inst = self.instances.get(iid)
        if inst is None:
            return
        inst._stopping.set()
        try:
            if inst.node is not None:
                _kill_all_in(inst.node.namespace)
        finally:
            try:
                if inst._runner is not None:
                    inst._runner.join(timeout=_KILL_TIMEOUT)
                if inst.imds is not None:
                    inst.imds.stop()
            finally:
                try:
                    if inst.forwarder is not None:
                        inst.forwarder.stop()
                finally:
                    try:
                        if inst.node is not None:
                            self.network.remove_node(inst.node.name)
                    finally:
                        with self._lock:
                            self.instances.pop(iid, None)
                        inst.finished.set()


def _kill_all_in(namespace: str) -> None:
    """SIGKILL every process in ``namespace`` until none is left (what they fork meanwhile
    is caught on the next round); never this process."""
    deadline = time.monotonic() + _KILL_TIMEOUT
    while True:
        r = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=10
        )
        pids = [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != os.getpid()]
        if r.returncode != 0 or not pids:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {namespace} survived SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
