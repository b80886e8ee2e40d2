"""Fair-share scheduling policies: create, update, delete, describe and list; and the shares
of a fair-share queue as the scheduler sees them (``mnp shares``).

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

from typing import Any

from mnp.errors import Conflict, FieldError, InvalidInput
from mnp.service.base import Context, _paginate
from mnp.service.models import CreateSchedulingPolicy, FairsharePolicy, UpdateSchedulingPolicy
from mnp.service.render import policy_detail
from mnp.service.requests import ByName, Page
from mnp.spec.arns import name_from_arn
from mnp.spec.environments import SchedulingPolicy

JSON = dict[str, Any]


class PolicyOps:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- scheduling policies ---------------------------------------------------------------------
    def create_scheduling_policy(self, req: CreateSchedulingPolicy) -> JSON:
        if req.name in self.ctx.policies:
            raise Conflict(f"scheduling policy {req.name!r} already exists")
        policy = SchedulingPolicy(
            req.name, _fairshare(req.fairsharePolicy), self.ctx.s.clock(), dict(req.tags or {})
        )
        with self.ctx.s.store.transaction():
            self.ctx.s.store.save_policy(policy)
        self.ctx.policies[policy.name] = policy
        self.ctx.s.policies[policy.name] = policy  # the scheduler orders its queues by it
        return {"name": policy.name, "arn": policy.arn}

    def update_scheduling_policy(self, req: UpdateSchedulingPolicy) -> JSON:
        policy = self.ctx.policy(req.arn)
        if req.fairsharePolicy is not None:
            policy.fairshare = _fairshare(req.fairsharePolicy)
            with self.ctx.s.store.transaction():
                self.ctx.s.store.save_policy(policy)
            self.ctx.s.policies[policy.name] = policy  # the next scheduling pass uses it
        return {}

    def delete_scheduling_policy(self, req: ByName) -> JSON:
        policy = self.ctx.policy(req.ref)
        users = sorted(
            q.name
            for q in self.ctx.s.queues.values()
            if q.scheduling_policy_arn is not None
            and name_from_arn(q.scheduling_policy_arn, "scheduling-policy") == policy.name
        )
        if users:
            raise InvalidInput(
                [
                    FieldError(
                        "arn",
                        f"scheduling policy {policy.name!r} is used by job queues: "
                        f"{', '.join(users)}",
                    )
                ]
            )
        with self.ctx.s.store.transaction():
            self.ctx.s.store.delete_policy(policy.name)
        del self.ctx.policies[policy.name]
        self.ctx.s.policies.pop(policy.name, None)
        return {}

    def describe_scheduling_policies(self, arns: tuple[str, ...]) -> JSON:
        """The policies that exist among ``arns`` (unknown ones are left out)."""
        found = [self.ctx.policies.get(name_from_arn(a, "scheduling-policy")) for a in arns]
        return {"schedulingPolicies": [policy_detail(p) for p in found if p is not None]}

    def list_scheduling_policies(self, page: Page) -> JSON:
        items = [{"arn": p.arn} for _, p in sorted(self.ctx.policies.items())]
        return _paginate("schedulingPolicies", items, page, 100)

    def describe_shares(self, req: ByName) -> JSON:
        """The shares of a fair-share queue now, in the order the scheduler serves them:
        decayed vCPU-seconds, weight factor (a prefix entry's already multiplied by its
        matching active shares), weighted usage, vCPUs held, RUNNABLE jobs, and the vCPUs the
        compute reservation holds back for shares not yet active."""
        q = self.ctx.queue(req.ref)
        view = self.ctx.rt.fair_share_views(self.ctx.s.clock()).get(q.name)
        if view is None:
            why = f"job queue {q.name!r} has no fair-share scheduling policy"
            raise InvalidInput([FieldError("jobQueue", why)])
        waiting: dict[str, int] = {}
        for job in self.ctx.s.runnable.get(q.name, {}).values():
            share = job.spec.share_identifier or ""
            waiting[share] = waiting.get(share, 0) + 1
        active = view.active | waiting.keys()
        rows = []
        for share in active | view.usage.keys():
            weight = view.weight(share, active)
            running = view.running.get(share, 0.0)
            used = view.usage.get(share, 0.0)
            rows.append(
                (
                    view.key(share, running, weight),
                    share,
                    {
                        "shareIdentifier": share,
                        "usageVcpuSeconds": round(used, 3),
                        "weightFactor": weight,
                        "weightedUsage": round(used * weight, 3),
                        "runningVcpus": running,
                        "runnableJobs": waiting.get(share, 0),
                        "active": share in active,
                    },
                )
            )
        return {
            "jobQueue": q.name,
            "shareDecaySeconds": view.policy.decay_seconds,
            "computeReservation": view.policy.reservation,
            "maxVcpus": view.max_vcpus,
            "reservedVcpus": round(view.max_vcpus * view.reserved_fraction(len(active)), 3),
            "shares": [row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1]))],
        }


def _fairshare(fp: FairsharePolicy | None) -> JSON:
    """A fair-share policy with AWS's defaults filled in (0, 0, weight 1.0)."""
    fp = fp or FairsharePolicy()
    return {
        "shareDecaySeconds": fp.shareDecaySeconds or 0,
        "computeReservation": fp.computeReservation or 0,
        "shareDistribution": [
            {
                "shareIdentifier": s.shareIdentifier,
                "weightFactor": s.weightFactor if s.weightFactor is not None else 1.0,
            }
            for s in fp.shareDistribution or []
        ],
    }
