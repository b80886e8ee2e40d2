"""Who is calling, and what they may do: the head's users and its authorization rules.

Identities: the head's *owner* (its own token, every key of ``<home>/credentials`` and the
``MNP_AWS_*`` key) is an admin named after the head process's login name; other users are
rows of the store's ``users`` table (:mod:`mnp.store.users`), made by an admin with
``createUser``. Each has a native token (only its sha256 is kept) and an AWS key pair.

The rules (checked by the service parts, with :func:`require_admin` / :func:`require_owner`):
every identity may list and describe jobs (another user's environment values are masked for
non-admins); a user may cancel, terminate, tag and read the logs of their own jobs only;
admins alone change compute environments, queues, scheduling policies and users, and may
deregister another user's job definition. A refusal is :class:`~mnp.errors.AccessDenied`
saying who may not do what to which.

Not thread-safe: call from the head node's event loop.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
import pwd
import re
import secrets
import sqlite3
import string
from dataclasses import dataclass, field
from typing import Any

from mnp.errors import AccessDenied, Conflict, FieldError, InvalidInput, NotFound
from mnp.scheduler.jobkeys import job_keys
from mnp.scheduler.state import HeadState
from mnp.service.roles import Role as JobRole
from mnp.service.roles import Roles
from mnp.spec.jobs import Job
from mnp.spec.resources import ContainerSpec
from mnp.store.users import UserRow

JSON = dict[str, Any]
NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
NAME_RULE = (
    "must be a POSIX login name: a lowercase letter or _, then up to 31 lowercase letters, "
    "digits, _ or -"
)
RESERVED_NAMES = frozenset({"root"})
"""Never a user's name: a root agent would run that user's jobs as the superuser."""
MASK = "*****"
"""What a non-admin sees instead of the value of another user's environment variable."""
_KEY_ALPHABET = string.ascii_uppercase + "234567"
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class Role(enum.StrEnum):
    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a request was authenticated as."""

    name: str
    role: Role
    is_owner: bool = False
    """The head's own account (its token or its AWS keys), not a row of the users table."""
    job_id: str | None = None
    """Set for a running job's own credentials (:mod:`mnp.scheduler.jobkeys`): that job."""
    job_role: JobRole | None = None
    """What those credentials may do on top of the submitter's rights."""
    session_token: str | None = field(default=None, repr=False, compare=False)
    """The session token a request signed with the job's AWS key must carry."""

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def owns(self, submitted_by: str | None) -> bool:
        """Whether a job or definition recorded as ``submitted_by`` (None: the owner) is this
        caller's own."""
        return (submitted_by or owner_name()) == self.name


def owner_name() -> str:
    """The head process's own login name (its uid's, whatever ``USER`` says)."""
    return _login_name(os.geteuid())


@functools.lru_cache(maxsize=8)
def _login_name(uid: int) -> str:
    """``uid``'s login name, read once (each request asks: a passwd read was 4% of a
    SubmitJob's CPU)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (a container): still one stable name
        return f"uid{uid}"


def owner() -> Caller:
    """The head's owner: an admin."""
    return Caller(owner_name(), Role.ADMIN, is_owner=True)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _caller(row: UserRow) -> Caller:
    return Caller(row.name, Role(row.role))


def require_admin(caller: Caller, what: str, which: str = "") -> None:
    """Raise AccessDenied unless ``caller`` is an admin."""
    if not caller.is_admin:
        target = f" {which}" if which else ""
        raise AccessDenied(f"{caller.name} may not {what}{target}: only an admin may")


def require_owner(caller: Caller, submitted_by: str | None, what: str, which: str) -> None:
    """Raise AccessDenied unless ``caller`` is an admin or the one recorded as
    ``submitted_by`` (None: the head's owner)."""
    if not (caller.is_admin or caller.owns(submitted_by)):
        who = submitted_by or owner_name()
        raise AccessDenied(f"{caller.name} may not {what} {which}: it belongs to {who}")


def run_as(caller: Caller, containers: list[ContainerSpec], where: str) -> str | None:
    """The account a job of ``caller`` running ``containers`` runs as: the containers'
    ``user`` if set, else the caller; None for the owner without a ``user`` (the agent's own
    account). Raises InvalidInput (every problem, each naming its field) when a non-admin's
    definition names another account or asks for a privileged container (root on the node),
    or the containers name different accounts. ``where``: the field path of the containers
    (``jobDefinition.containerProperties``, ``jobDefinition.nodeProperties``)."""
    errors: list[FieldError] = []
    users: set[str] = set()
    for c in containers:
        user, privileged = c.extra.get("user"), c.extra.get("privileged")
        if isinstance(user, str) and user:
            users.add(user)
            if not caller.is_admin and user != caller.name:
                errors.append(
                    FieldError(
                        f"{where}.user",
                        f"{caller.name} may run jobs only as "
                        f"themselves (user {caller.name!r}), got {user!r}",
                    )
                )
        if privileged is True and not caller.is_admin:
            errors.append(
                FieldError(
                    f"{where}.privileged",
                    "only an admin may run a privileged container (it is root on the node)",
                )
            )
    if len(users) > 1:
        errors.append(
            FieldError(f"{where}.user", f"every node must run as one account, got {sorted(users)}")
        )
    if errors:
        raise InvalidInput(list(dict.fromkeys(errors)))
    if users:
        return users.pop()
    return None if caller.is_owner else caller.name


def mask_environment(detail: JSON) -> JSON:
    """``detail`` (a JobDetail) with every environment value shown as :data:`MASK`: the
    container's and each node range's (a copy; ``detail`` is left as it is)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _masked(v) if k == "environment" else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out: JSON = walk(detail)
    return out


def _masked(env: Any) -> Any:
    if not isinstance(env, list):
        return env
    return [{**e, "value": MASK} if isinstance(e, dict) else e for e in env]


class UserOps:
    """createUser, listUsers, deleteUser, whoAmI, and the lookups the front doors use."""

    def __init__(self, state: HeadState) -> None:
        self._s = state

    # --- lookups (the front doors) -------------------------------------------------------
    def by_token(self, token: str) -> Caller | None:
        """The user whose native token is ``token`` (by its hash), or the running job whose
        token it is (:mod:`mnp.scheduler.jobkeys`), if any."""
        job = job_keys(self._s).by_token(token)
        if job is not None:
            return self._job_caller(job)
        row = self._s.store.users.by_token_hash(token_hash(token))
        return None if row is None else _caller(row)

    def by_access_key(self, access_key_id: str) -> tuple[Caller, str] | None:
        """The user whose AWS key id is ``access_key_id``, or the running job whose key it
        is, and the key's secret, if any."""
        found = job_keys(self._s).by_access_key(access_key_id)
        if found is not None:
            job, keys = found
            caller = self._job_caller(job, keys.session_token)
            return None if caller is None else (caller, keys.secret_access_key)
        row = self._s.store.users.by_access_key(access_key_id)
        return None if row is None else (_caller(row), row.secret_access_key)

    def roles(self) -> Roles:
        return Roles(self._s.store.get_meta, self._s.store.set_meta)

    def _job_caller(self, job: Job, session_token: str | None = None) -> Caller | None:
        """A running job's identity: its submitter (None: a user deleted since), limited by
        the job's role."""
        submitter = job.submitted_by
        if submitter is None or submitter == owner_name():
            base = owner()
        else:
            row = self._s.store.users.by_name(submitter)
            if row is None:
                return None
            base = _caller(row)
        role = self.roles().for_job(job.container.extra.get("jobRoleArn"))
        return Caller(base.name, base.role, job_id=job.job_id, job_role=role,
                      session_token=session_token)  # fmt: skip

    def names(self) -> list[str]:
        return [r.name for r in self._s.store.users.all()]

    # --- operations ----------------------------------------------------------------------
    def create_user(self, caller: Caller, name: str, role: str) -> JSON:
        """A new user; answers its native token and AWS key pair, the only time they are
        shown. 400 names a bad ``name``/``role``; 409 a name taken (or the owner's own)."""
        require_admin(caller, "create user", name)
        errors = []
        if not NAME_RE.fullmatch(name):
            errors.append(FieldError("name", f"{NAME_RULE}, got {name!r}"))
        elif name in RESERVED_NAMES:  # its jobs would run as the superuser on root agents
            errors.append(FieldError("name", f"{name!r} is reserved (the superuser's name)"))
        if role not in tuple(Role):
            errors.append(FieldError("role", f"must be one of user, admin, got {role!r}"))
        if errors:
            raise InvalidInput(errors)
        store = self._s.store
        if name == owner_name() or store.users.by_name(name) is not None:
            raise Conflict(f"user {name!r} already exists")
        token = secrets.token_urlsafe(32)
        key_id = "MNPU" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
        row = UserRow(name, role, token_hash(token), key_id, secret, self._s.clock())
        try:
            with store.transaction():
                store.users.add(row)
        except sqlite3.IntegrityError:  # raced by another createUser of the same name
            raise Conflict(f"user {name!r} already exists") from None
        return {
            "name": name,
            "role": role,
            "token": token,
            "awsAccessKeyId": key_id,
            "awsSecretAccessKey": secret,
            "createdAt": row.created_at,
        }

    def list_users(self, caller: Caller) -> JSON:
        """Every identity (the owner first), without secrets; open to every identity."""
        rows = self._s.store.users.all()
        out: list[JSON] = [{"name": owner_name(), "role": "admin", "owner": True}]
        out += [
            {"name": r.name, "role": r.role, "awsAccessKeyId": r.access_key_id,
             "createdAt": r.created_at}
            for r in rows
        ]  # fmt: skip
        return {"users": out}

    def delete_user(self, caller: Caller, name: str) -> JSON:
        """Remove ``name``: its token and keys stop working with the next request."""
        require_admin(caller, "delete user", name)
        store = self._s.store
        if name == owner_name():
            raise InvalidInput([FieldError("name", "the head's owner cannot be deleted")])
        with store.transaction():
            removed = store.users.remove(name)
        if not removed:
            raise NotFound(f"user {name!r} does not exist")
        return {}

    @staticmethod
    def who_am_i(caller: Caller) -> JSON:
        return {"name": caller.name, "role": caller.role.value, "owner": caller.is_owner}
