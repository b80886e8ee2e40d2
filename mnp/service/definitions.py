"""Job definitions: register, deregister and describe.

Part of :class:`mnp.service.core.Service` (see there for the contract every operation keeps).
"""

from __future__ import annotations

from typing import Any

from mnp.errors import InvalidInput, NotFound
from mnp.service.base import Context, _paginate
from mnp.service.models import RegisterJobDefinition
from mnp.service.requests import ByName, DescribeJobDefinitions
from mnp.service.users import Caller, require_owner
from mnp.service.validation import check_timeout
from mnp.spec.definitions import JobDefinition

JSON = dict[str, Any]


class DefinitionOps:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def register(self, req: RegisterJobDefinition, caller: Caller) -> JSON:
        """A new revision (the next number for its name), ACTIVE, recording ``caller`` as
        ``registeredBy`` (the owner's are left unmarked)."""
        s = self.ctx.s
        problems = check_timeout(req.timeout, s.config.min_timeout_seconds)
        if problems:
            raise InvalidInput(problems)
        revisions = s.definitions.setdefault(req.jobDefinitionName, [])
        revision = (revisions[-1].revision if revisions else 0) + 1
        doc = req.model_dump(exclude_none=True)
        if not caller.is_owner:
            doc["registeredBy"] = caller.name
        definition = JobDefinition(req.jobDefinitionName, revision, "ACTIVE", doc)
        with s.store.transaction():
            s.store.save_definition(definition)
        revisions.append(definition)
        return {
            "jobDefinitionName": definition.name,
            "jobDefinitionArn": definition.arn,
            "revision": revision,
        }

    def deregister(self, req: ByName, caller: Caller) -> JSON:
        """Make a revision INACTIVE: one the caller registered (an admin: any)."""
        definition = self.ctx.definition(req.ref, active_only=False)
        require_owner(
            caller, definition.registered_by, "deregister job definition",
            f"{definition.name}:{definition.revision}",
        )  # fmt: skip
        definition.status = "INACTIVE"
        with self.ctx.s.store.transaction():
            self.ctx.s.store.save_definition(definition)
        return {}

    def describe(self, req: DescribeJobDefinitions) -> JSON:
        """The revisions asked for by reference (unknown ones left out), else every revision
        matching ``jobDefinitionName`` and ``status``; paged."""
        if req.refs:
            found = []
            for ref in req.refs:
                try:
                    found.append(self.ctx.definition(ref, active_only=False))
                except NotFound:
                    pass
        else:
            found = [
                d
                for n, revs in self.ctx.s.definitions.items()
                if req.name is None or n == req.name
                for d in revs
                if req.status is None or d.status == req.status
            ]
        return _paginate("jobDefinitions", [d.to_wire() for d in found], req.page, 100)
