"""The head node's behaviour behind both front doors (the native API and the AWS Batch wire).

:class:`Service` is composed of one part per kind of resource, sharing one
:class:`~mnp.service.base.Context`; each operation is a method of a part that takes a typed
request (a model of :mod:`mnp.service.models` or :mod:`mnp.service.requests`) and answers
AWS Batch's JSON shape. :mod:`mnp.service.operations` is the one table of the operations: it
parses a front door's JSON body once into the request and calls the method.

Answers stay JSON-shaped dicts on purpose: they are the wire shape both doors send (the AWS
door only takes mnp's own fields out), so typing them would add a copy of AWS's output model
to keep in step with botocore's for no caller that reads them. Invalid input raises
:class:`~mnp.errors.InvalidInput` before anything is written; methods that change state flush
it to the store before returning. Not thread-safe: call from the head node's event loop.
"""

from __future__ import annotations

from typing import Any

from mnp.config import network_kind
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service.base import JOB_DEFINITION_MAX, MNP_SUBMIT_MAX, SUBMIT_MAX, Context
from mnp.service.definitions import DefinitionOps
from mnp.service.jobs import JobOps
from mnp.service.logs import LogReader
from mnp.service.models import CreateComputeEnvironment, CreateJobQueue
from mnp.service.policies import PolicyOps
from mnp.service.render import node_detail
from mnp.service.requests import ListNodes
from mnp.service.resources import ResourceOps
from mnp.service.tags import TagOps
from mnp.service.users import UserOps
from mnp.service.validation import parse
from mnp.spec.environments import ComputeEnvironment, NodeStatus
from mnp.spec.resources import Resources

__all__ = ["JOB_DEFINITION_MAX", "MNP_SUBMIT_MAX", "SUBMIT_MAX", "Service"]


class Service:
    """One head node's operations, by part; the parts share :attr:`ctx`."""

    def __init__(self, state: HeadState, scheduler: Scheduler) -> None:
        self.ctx = Context(state, scheduler)
        self.definitions = DefinitionOps(self.ctx)
        self.jobs = JobOps(self.ctx)
        self.resources = ResourceOps(self.ctx, self.jobs)
        self.policies = PolicyOps(self.ctx)
        self.tags = TagOps(self.ctx)
        self.logs = LogReader(state, scheduler)
        self.users = UserOps(state)

    # --- loading ------------------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild memory from the store (start and restart): the service's own scheduling
        policies, then the scheduler's state (:meth:`Scheduler.restore`)."""
        self.ctx.policies = {p.name: p for p in self.ctx.s.store.load_policies()}
        self.ctx.rt.restore()

    # --- mnp's own --------------------------------------------------------------------------------
    def list_nodes(self, req: ListNodes) -> dict[str, Any]:
        s = self.ctx.s
        ce = req.compute_environment
        nodes = [n for n in s.nodes.values() if ce is None or n.compute_environment == ce]
        if not req.include_gone:
            nodes = [n for n in nodes if n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)]
        return {
            "nodes": [
                node_detail(n, s.node_rt.get(n.node_id))
                for n in sorted(nodes, key=lambda n: (n.compute_environment, n.slot))
            ]
        }

    def _renetwork(self, ce: ComputeEnvironment) -> None:
        """Move the default environment to the head's node network (an older store's
        loopback nodes become namespace nodes, or back), only while it has no live node:
        a node keeps its address for life."""
        local = self.ctx.s.config.local
        first = (local.first_address if local else None) or self.resources.addresses.default_first()
        if network_kind(first) == network_kind(ce.first_address):
            return
        if any(
            n.compute_environment == ce.name
            and n.status in (NodeStatus.ACTIVE, NodeStatus.LAUNCHING)
            for n in self.ctx.s.nodes.values()
        ):
            return
        others = [c for c in self.ctx.s.ces.values() if c is not ce]
        ce.first_address = self.resources.addresses.next_first(others, None) if others else first

    def ensure_defaults(self) -> None:
        """Create the embedded default (local environment + default queue) when configured."""
        s = self.ctx.s
        local = s.config.local
        if local is None:
            return
        if local.name not in s.ces:
            body = {
                "computeEnvironmentName": local.name,
                "type": "MANAGED",
                "mnp": {
                    "provider": "local",
                    "nodes": local.nodes,
                    "vcpus": local.vcpus,
                    "memoryMiB": local.memory_mib,
                    "gpus": local.gpus,
                    "firstAddress": local.first_address or self.resources.addresses.default_first(),
                },
            }
            self.resources.create_compute_environment(parse(CreateComputeEnvironment, body))
        else:
            ce = s.ces[local.name]
            ce.node_resources = Resources(local.vcpus, local.memory_mib, local.gpus)
            self._renetwork(ce)
            self.resources.resize(ce, local.nodes)
            with s.store.transaction():
                s.store.save_ce(ce)
        if s.config.default_queue not in s.queues:
            queue = {
                "jobQueueName": s.config.default_queue,
                "priority": 1,
                "computeEnvironmentOrder": [{"order": 1, "computeEnvironment": local.name}],
            }
            self.resources.create_job_queue(parse(CreateJobQueue, queue))
