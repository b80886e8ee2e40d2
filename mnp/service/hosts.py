"""``addHost``, ``removeHost``, ``listHosts``: the user's own machines in an UNMANAGED
compute environment (admins only: the operations table marks them so).

Adding records the host and returns at once: its bring-up (:mod:`mnp.scheduler.hosts`) runs
in a thread, and ``listHosts`` (or ``mnp hosts list``) shows how it stands, with a reason
naming any failure. Removing drains the host first (see :meth:`HostOps.remove_host`).
"""

from __future__ import annotations

from typing import Any

from mnp.errors import Conflict, FieldError, InvalidInput, NotFound
from mnp.service.base import Context
from mnp.service.requests import AddHost, ByName, RemoveHost
from mnp.spec.environments import ComputeEnvironment, ComputeEnvironmentType, Host, HostStatus

JSON = dict[str, Any]


class HostOps:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _ce(self, ref: str) -> ComputeEnvironment:
        try:
            ce = self.ctx.ce(ref)
        except NotFound as e:
            raise InvalidInput([FieldError("computeEnvironment", str(e))]) from None
        if ce.type != ComputeEnvironmentType.UNMANAGED:
            raise InvalidInput([FieldError(
                "computeEnvironment", f"{ce.name} is {ce.type}: hosts join UNMANAGED environments"
            )])  # fmt: skip
        return ce

    def add_host(self, req: AddHost) -> JSON:
        """Record the host (PENDING) and wake the scheduler, which brings it up. Raises
        InvalidInput for a missing or MANAGED environment, Conflict for a name or address
        (and port) the environment already has."""
        ce = self._ce(req.compute_environment)
        for h in ce.hosts:
            if h.name == req.name:
                raise Conflict(f"name: {ce.name} already has a host named {req.name}")
            if (h.address, h.port) == (req.address, req.port):
                raise Conflict(f"address: {req.address}:{req.port} is host {h.name} already")
        s = self.ctx.s
        host = Host(
            name=req.name, address=req.address, identity_file=req.identity_file, port=req.port,
            user=req.user, host_key=req.host_key, known_hosts=req.known_hosts,
            python=req.python, vcpus=req.vcpus, memory_mib=req.memory_mib,
            head_url=req.head_url, proxy_command=req.proxy_command, added_at=s.clock(),
        )  # fmt: skip
        ce.hosts.append(host)
        with s.store.transaction():
            s.store.save_ce(ce)
        s.on_wake()
        return {"host": self._detail(ce, host)}

    def remove_host(self, req: RemoveHost) -> JSON:
        """Drain the host: nothing new lands on it, running work may go on for
        ``graceSeconds`` (then it is stopped), then its agent and tunnel are stopped and the
        host is forgotten. Answers at once (the host shows DRAINING until it is gone)."""
        ce = self._ce(req.compute_environment)
        host = next((h for h in ce.hosts if h.name == req.name), None)
        if host is None:
            raise NotFound(f"{ce.name} has no host named {req.name!r}")
        if host.status != HostStatus.DRAINING:
            self.ctx.rt.hosts.remove(ce, host, req.grace_seconds * 1000)
        self.ctx.s.on_wake()
        return {"host": self._detail(ce, host)}

    def list_hosts(self, req: ByName) -> JSON:
        """Every host (of the environment ``req`` names, or of all), with its node's state."""
        ces = [self._ce(req.ref)] if req.ref else list(self.ctx.s.ces.values())
        return {"hosts": [self._detail(ce, h) for ce in ces for h in ce.hosts]}

    def _detail(self, ce: ComputeEnvironment, h: Host) -> JSON:
        node = self.ctx.s.nodes.get(h.node_id(ce.name))
        out: JSON = {
            "computeEnvironment": ce.name, "name": h.name, "address": h.address,
            "port": h.port, "user": h.user, "status": h.status.value,
            "statusReason": h.status_reason, "nodeId": h.node_id(ce.name),
            "hostKey": h.host_key, "knownHostsFile": h.known_hosts, "python": h.python,
            "headUrl": h.head_url, "proxyCommand": h.proxy_command, "failures": h.failures,
        }  # fmt: skip
        if node is not None:
            out["node"] = {
                "status": node.status.value, "statusReason": node.status_reason,
                "draining": node.draining, "vcpus": node.capacity.vcpus,
                "memoryMiB": node.capacity.memory_mib,
            }  # fmt: skip
        out["environmentStatusReason"] = ce.status_reason
        return {k: v for k, v in out.items() if v is not None}
