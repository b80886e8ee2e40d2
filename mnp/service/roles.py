"""Roles: what a running job may do with its credentials (:mod:`mnp.scheduler.jobkeys`).

A job acts as its submitter, never as more: an ordinary user's job may not do what that user
may not. On top, its role limits it to a list of statements, each allowing actions (AWS's
names, ``batch:SubmitJob``, ``logs:GetLogEvents``; mnp's own operations ``mnp:<name>``;
trailing ``*`` globs: ``batch:Describe*``, ``batch:*``) on queues and job definitions (globs
on names; ``*`` any). The queue and definition are checked where a request names them
(SubmitJob, RegisterJobDefinition, ...).

A job's role is the last part of its definition's ``jobRoleArn``
(``arn:aws:iam::123456789012:role/pipeline`` → ``pipeline``), looked up among the roles an
admin made (``mnp role create``, the native ``createRole``); a job without one, or naming a
role this head does not have, gets :data:`DEFAULT_ROLE`: read the cluster, submit and stop
jobs, read logs — what a workflow's head job needs, nothing that changes the cluster.

Roles live in the store's metadata as one JSON document (a handful of small rows).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

from mnp.errors import AccessDenied, Conflict, FieldError, InvalidInput, NotFound
from mnp.spec.arns import name_from_arn

JSON = dict[str, Any]
META_KEY = "roles"
ROLE_NAME_RE = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
ACTION_RE = re.compile(r"(batch|logs|mnp):[A-Za-z*]{1,64}|\*")
MAX_STATEMENTS = 20
MAX_PATTERNS = 50


@dataclass(frozen=True, slots=True)
class Statement:
    actions: tuple[str, ...]
    queues: tuple[str, ...] = ("*",)
    definitions: tuple[str, ...] = ("*",)

    def allows(self, action: str, queue: str | None, definition: str | None) -> bool:
        return (
            any(_match(action, a) for a in self.actions)
            and (queue is None or any(fnmatch.fnmatchcase(queue, q) for q in self.queues))
            and (
                definition is None
                or any(fnmatch.fnmatchcase(definition, d) for d in self.definitions)
            )
        )

    def to_doc(self) -> JSON:
        return {
            "actions": list(self.actions),
            "queues": list(self.queues),
            "definitions": list(self.definitions),
        }


def _match(action: str, pattern: str) -> bool:
    """Action names compare without case (as IAM's do); ``*`` only at the end."""
    a, p = action.lower(), pattern.lower()
    return a.startswith(p[:-1]) if p.endswith("*") else a == p


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    statements: tuple[Statement, ...]

    def check(self, action: str, queue: str | None = None, definition: str | None = None) -> None:
        """Raise AccessDenied unless a statement allows ``action`` (on ``queue`` and
        ``definition`` when the request names them)."""
        if not any(s.allows(action, queue, definition) for s in self.statements):
            on = "".join(
                f" on {kind} {name!r}"
                for kind, name in (("queue", queue), ("job definition", definition))
                if name is not None
            )
            raise AccessDenied(f"the job's role {self.name!r} does not allow {action}{on}")

    def to_doc(self) -> JSON:
        return {"roleName": self.name, "statements": [s.to_doc() for s in self.statements]}


DEFAULT_ROLE = Role(
    "mnp-job-default",
    (
        Statement(
            (
                "batch:Describe*", "batch:List*", "batch:GetJobQueueSnapshot",
                "batch:SubmitJob", "batch:CancelJob", "batch:TerminateJob",
                "batch:TagResource", "batch:UntagResource",
                "logs:Get*", "logs:Describe*", "logs:FilterLogEvents",
                "mnp:list*", "mnp:describe*", "mnp:whoAmI",
                "mnp:requeueJob", "mnp:holdJob", "mnp:releaseJob",
            ),
        ),
    ),
)  # fmt: skip
"""The role of a job whose definition names none (or one this head does not have)."""


def role_name_of(role_arn: object) -> str | None:
    """``arn:aws:iam::…:role/path/name`` (or a bare name) → ``name``; None for none."""
    if not isinstance(role_arn, str) or not role_arn:
        return None
    return role_arn.rsplit("/", 1)[-1] if role_arn.startswith("arn:") else role_arn


def request_resources(body: object) -> tuple[str | None, str | None]:
    """The queue and job definition a request's body names, by name (None: it names none)."""
    if not isinstance(body, dict):
        return None, None
    queue = body.get("jobQueue")
    definition = body.get("jobDefinition", body.get("jobDefinitionName"))
    q = name_from_arn(queue, "job-queue") if isinstance(queue, str) else None
    d = name_from_arn(definition, "job-definition") if isinstance(definition, str) else None
    if d is not None and ":" in d:
        d = d.rsplit(":", 1)[0]  # name:revision → name
    return q, d


def _patterns(value: object, path: str, errors: list[FieldError], rule: re.Pattern[str] | None
              ) -> tuple[str, ...]:  # fmt: skip
    if value is None:
        return ("*",)
    if not isinstance(value, list) or not value or len(value) > MAX_PATTERNS:
        errors.append(FieldError(path, f"must be a list of 1 to {MAX_PATTERNS} strings"))
        return ()
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > 256:
            errors.append(FieldError(f"{path}[{i}]", "must be a string of 1 to 256 characters"))
        elif rule is not None and not rule.fullmatch(item):
            errors.append(
                FieldError(
                    f"{path}[{i}]",
                    f"must be batch:, logs: or mnp: and an action name (a trailing * for "
                    f"a prefix), or *; got {item!r}",
                )
            )
        else:
            out.append(item)
    return tuple(out)


def parse_role(body: object) -> Role:
    """A role from ``{"roleName", "statements": [{"actions", "queues"?, "definitions"?}]}``;
    InvalidInput names every bad field."""
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        raise InvalidInput("the request must be a JSON object")
    name = body.get("roleName")
    if not isinstance(name, str) or not ROLE_NAME_RE.fullmatch(name):
        errors.append(
            FieldError("roleName", "must be 1 to 64 letters, digits or +=,.@_- (as IAM's)")
        )
    raw = body.get("statements")
    statements: list[Statement] = []
    if not isinstance(raw, list) or not raw or len(raw) > MAX_STATEMENTS:
        errors.append(FieldError("statements", f"must be a list of 1 to {MAX_STATEMENTS}"))
        raw = []
    for i, st in enumerate(raw):
        path = f"statements[{i}]"
        if not isinstance(st, dict):
            errors.append(FieldError(path, "must be an object with actions"))
            continue
        unknown = set(st) - {"actions", "queues", "definitions"}
        if unknown:
            errors.append(FieldError(f"{path}.{sorted(unknown)[0]}", "is not a statement field"))
        if "actions" not in st:
            errors.append(FieldError(f"{path}.actions", "is required"))
            continue
        actions = _patterns(st["actions"], f"{path}.actions", errors, ACTION_RE)
        queues = _patterns(st.get("queues"), f"{path}.queues", errors, None)
        definitions = _patterns(st.get("definitions"), f"{path}.definitions", errors, None)
        statements.append(Statement(actions, queues, definitions))
    if errors:
        raise InvalidInput(errors)
    assert isinstance(name, str)
    return Role(name, tuple(statements))


class Roles:
    """The head's roles, kept in the store's metadata (:data:`META_KEY`)."""

    def __init__(self, get_meta: Any, set_meta: Any) -> None:
        self._get = get_meta
        self._set = set_meta

    def _all(self) -> dict[str, JSON]:
        text = self._get(META_KEY)
        return dict(json.loads(text)) if text else {}

    def get(self, name: str) -> Role | None:
        doc = self._all().get(name)
        return None if doc is None else parse_role(doc)

    def for_job(self, role_arn: object) -> Role:
        """The role a job with this ``jobRoleArn`` acts under."""
        name = role_name_of(role_arn)
        found = self.get(name) if name is not None else None
        return found or DEFAULT_ROLE

    def create(self, role: Role) -> JSON:
        roles = self._all()
        if role.name in roles or role.name == DEFAULT_ROLE.name:
            raise Conflict(f"role {role.name!r} exists already")
        roles[role.name] = role.to_doc()
        self._set(META_KEY, json.dumps(roles, sort_keys=True))
        return role.to_doc()

    def delete(self, name: str) -> None:
        roles = self._all()
        if roles.pop(name, None) is None:
            raise NotFound(f"role {name!r} does not exist")
        self._set(META_KEY, json.dumps(roles, sort_keys=True))

    def list(self) -> list[JSON]:
        return [DEFAULT_ROLE.to_doc(), *(self._all()[n] for n in sorted(self._all()))]
