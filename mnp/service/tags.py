"""Tags on every kind of Batch resource: tag, untag and list, by ARN.

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mnp.build.environment import env_tag_errors
from mnp.errors import FieldError, InvalidInput, NotFound
from mnp.service.base import MAX_TAGS, Context
from mnp.service.models import TagResource, UntagResource
from mnp.service.requests import ByName
from mnp.service.users import Caller, require_admin, require_owner

JSON = dict[str, Any]


class TagOps:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- tags ---------------------------------------------------------------------------------
    def tag_resource(self, req: TagResource, caller: Caller) -> JSON:
        """Add tags: to a job of the caller's own (an admin: any resource)."""
        tags, save = self._tagged(req.resourceArn, caller, "tag")
        total = len({**tags, **req.tags})
        if total > MAX_TAGS:
            raise InvalidInput(
                [FieldError("tags", f"a resource has at most {MAX_TAGS} tags; this makes {total}")]
            )
        if ":compute-environment/" in req.resourceArn:  # mnp:env: tags become jobs' variables
            errors = env_tag_errors(req.tags)
            if errors:
                raise InvalidInput(errors)
        tags.update(req.tags)
        with self.ctx.s.store.transaction():
            save()
        return {}

    def untag_resource(self, req: UntagResource, caller: Caller) -> JSON:
        """Remove tags: from a job of the caller's own (an admin: any resource)."""
        tags, save = self._tagged(req.resourceArn, caller, "untag")
        for key in req.tagKeys:
            tags.pop(key, None)
        with self.ctx.s.store.transaction():
            save()
        return {}

    def list_tags_for_resource(self, req: ByName) -> JSON:
        tags, _ = self._tagged(req.ref)
        return {"tags": dict(tags)}

    def _tagged(
        self, arn: str, caller: Caller | None = None, what: str = ""
    ) -> tuple[dict[str, str], Callable[[], None]]:
        """The live tag map of the resource ``arn`` names, and how to store it. With a
        ``caller`` (a change): AccessDenied unless it is an admin or the job's submitter."""
        parts = arn.split(":", 5)
        kind, _, rest = parts[5].partition("/") if len(parts) == 6 else ("", "", "")
        if parts[0] != "arn" or not rest:
            raise InvalidInput([FieldError("resourceArn", f"{arn!r} is not a Batch resource ARN")])
        store = self.ctx.s.store
        if caller is not None and kind != "job":
            require_admin(caller, what, arn)
        if kind == "compute-environment":
            ce = self.ctx.ce(rest)
            return ce.doc.setdefault("tags", {}), lambda: store.save_ce(ce)
        if kind == "job-queue":
            q = self.ctx.queue(rest)
            return q.tags, lambda: store.save_queue(q)
        if kind == "job-definition":
            d = self.ctx.definition(rest, active_only=False)
            return d.doc.setdefault("tags", {}), lambda: store.save_definition(d)
        if kind == "scheduling-policy":
            p = self.ctx.policy(rest)
            return p.tags, lambda: store.save_policy(p)
        if kind == "job":
            if ":" in rest or "#" in rest:
                raise InvalidInput(
                    [
                        FieldError(
                            "resourceArn",
                            "child jobs of array and multi-node parallel jobs have no tags of "
                            "their own; use the parent job's ARN",
                        )
                    ]
                )
            job = self.ctx.s.job(rest)
            if job is None:
                raise NotFound(f"no job with id {rest!r}")
            if caller is not None:
                require_owner(caller, job.submitted_by, what, f"job {rest}")
            spec = job.spec
            return spec.tags, lambda: store.save_spec(spec)
        raise InvalidInput(
            [FieldError("resourceArn", f"{kind!r} resources cannot be tagged (ARN {arn!r})")]
        )
