"""Typed requests of the operations whose bodies AWS Batch leaves loosely shaped.

The operations with a schema take the pydantic models of :mod:`mnp.service.models`; these
are the others (describe, list and delete calls with a few optional fields). Each ``from_body``
reads a JSON body as received, applies exactly the checks the operation makes before it looks
at any state, and raises :class:`~mnp.errors.InvalidInput` for those; checks that must come
after a state lookup (so that the first error reported stays the same) stay in the operation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnp.errors import FieldError, InvalidInput

JSON = dict[str, Any]


def required(body: JSON, key: str) -> str:
    """``body[key]`` as a non-empty string, else ``key: required``."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput([FieldError(key, "required")])
    return value


def _names(body: JSON, key: str) -> tuple[str, ...]:
    """``body[key]``: absent, or a list of strings."""
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput([FieldError(key, "must be a list of strings")])
    bad = [FieldError(f"{key}[{i}]", "must be a string") for i, n in enumerate(value)
           if not isinstance(n, str)]  # fmt: skip
    if bad:
        raise InvalidInput(bad)
    return tuple(value)


def _text(body: JSON, key: str) -> str | None:
    """``body[key]``: absent (None) or a string."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput([FieldError(key, "must be a string")])
    return value


def _flag(body: JSON, key: str) -> bool:
    """``body[key]``: absent (False) or a boolean."""
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput([FieldError(key, "must be true or false")])
    return bool(value)


def _filters(body: JSON) -> list[JSON]:
    """ListJobs' ``filters``: a list of ``{"name": str, "values": [str, …]}``."""
    value = body.get("filters")
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput([FieldError("filters", "must be a list of objects")])
    for i, f in enumerate(value):
        if not isinstance(f, dict):
            raise InvalidInput([FieldError(f"filters[{i}]", "must be an object")])
        _text(f, "name")
        values = f.get("values")
        if values is not None and not (
            isinstance(values, list) and all(isinstance(v, str) for v in values)
        ):
            raise InvalidInput([FieldError(f"filters[{i}].values", "must be a list of strings")])
    return value


BAD_TOKEN = "not a token this head node gave out"


@dataclass(frozen=True, slots=True)
class Page:
    """``maxResults`` and ``nextToken`` as given. They are checked by :meth:`resolve` when the
    operation pages, which for ListJobs is after its other checks."""

    max_results: object = None
    next_token: object = None

    @classmethod
    def from_body(cls, body: JSON) -> Page:
        return cls(body.get("maxResults"), body.get("nextToken"))

    def _limit(self, default: int, errors: list[FieldError]) -> int:
        """``maxResults``, or ``default`` when absent or (with an error added) not >= 1."""
        limit = self.max_results
        if limit is None:
            return default
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            errors.append(FieldError("maxResults", "must be at least 1"))
            return default
        return limit

    def resolve(self, default: int, most: int) -> tuple[int, int]:
        """``(maxResults, offset from nextToken)``, both checked; a page holds at most
        ``most``."""
        errors: list[FieldError] = []
        limit = self._limit(default, errors)
        token = self.next_token or "0"
        if not (isinstance(token, str) and token.isdigit()):
            errors.append(FieldError("nextToken", BAD_TOKEN))
            token = "0"
        if errors:
            raise InvalidInput(errors)
        return min(limit, most), int(token)

    def keyed(self, default: int, most: int) -> tuple[int, str | None]:
        """``(maxResults, nextToken)`` for a listing that pages by key (ListJobs): the token
        as given, or None; its signature is the listing's to check (:mod:`mnp.store.pages`)."""
        errors: list[FieldError] = []
        limit = self._limit(default, errors)
        token = self.next_token or None
        if token is not None and not isinstance(token, str):
            errors.append(FieldError("nextToken", BAD_TOKEN))
        if errors:
            raise InvalidInput(errors)
        return min(limit, most), token if isinstance(token, str) else None


@dataclass(frozen=True, slots=True)
class ByName:
    """A request naming one resource (``jobQueue``, ``arn``…) by name or ARN."""

    ref: str


def loose(key: str) -> Callable[[JSON], ByName]:
    """``body[key]`` as text, ``""`` when absent (the lookup then answers NotFound)."""

    def parse(body: JSON) -> ByName:
        return ByName(_text(body, key) or "")

    return parse


def strict(key: str) -> Callable[[JSON], ByName]:
    """``body[key]``, which must be a non-empty string."""

    def parse(body: JSON) -> ByName:
        return ByName(required(body, key))

    return parse


def deregister_job_definition(body: JSON) -> ByName:
    ref = _text(body, "jobDefinition")
    if not ref:
        raise InvalidInput([FieldError("jobDefinition", "required")])
    return ByName(ref)


@dataclass(frozen=True, slots=True)
class Described:
    """A describe call: the names or ARNs asked for (none: all) and the page."""

    names: tuple[str, ...]
    page: Page


def described(key: str) -> Callable[[JSON], Described]:
    def parse(body: JSON) -> Described:
        return Described(_names(body, key), Page.from_body(body))

    return parse


@dataclass(frozen=True, slots=True)
class DescribeJobDefinitions:
    refs: tuple[str, ...]
    """Asked for by reference; when empty, ``name`` and ``status`` filter instead."""
    name: object
    """``jobDefinitionName`` as given (compared, never converted)."""
    status: object
    page: Page

    @classmethod
    def from_body(cls, body: JSON) -> DescribeJobDefinitions:
        return cls(
            _names(body, "jobDefinitions"),
            _text(body, "jobDefinitionName"),
            _text(body, "status"),
            Page.from_body(body),
        )


@dataclass(frozen=True, slots=True)
class DescribeJobs:
    ids: tuple[str, ...]

    @classmethod
    def from_body(cls, body: JSON) -> DescribeJobs:
        ids = body.get("jobs")
        if not isinstance(ids, list) or not ids:
            raise InvalidInput([FieldError("jobs", "required: a list of 1-100 job ids")])
        if len(ids) > 100:
            raise InvalidInput([FieldError("jobs", f"at most 100 job ids, got {len(ids)}")])
        return cls(_names(body, "jobs"))


@dataclass(frozen=True, slots=True)
class ListJobs:
    """ListJobs as given; :mod:`mnp.service.listing` checks it (its checks interleave with
    the job queue's lookup, so they cannot all run here)."""

    job_queue: str | None
    parent: str | None
    """``arrayJobId`` or ``multiNodeJobId``."""
    selectors: tuple[str, ...]
    """Which of jobQueue, arrayJobId, multiNodeJobId were given (non-empty)."""
    all_statuses: bool
    include_children: bool
    job_status: object
    filters: list[Any]
    page: Page

    @classmethod
    def from_body(cls, body: JSON) -> ListJobs:
        queue_ref = _text(body, "jobQueue")
        parent = _text(body, "arrayJobId") or _text(body, "multiNodeJobId")
        return cls(
            job_queue=queue_ref or None,
            parent=parent or None,
            selectors=tuple(k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if body.get(k)),
            all_statuses=_flag(body, "allStatuses"),
            include_children=_flag(body, "includeChildren"),
            job_status=_text(body, "jobStatus"),
            filters=_filters(body),
            page=Page.from_body(body),
        )


def describe_scheduling_policies(body: JSON) -> tuple[str, ...]:
    arns = body.get("arns")
    if not isinstance(arns, list) or not 1 <= len(arns) <= 100:
        raise InvalidInput([FieldError("arns", "required: a list of 1-100 ARNs")])
    return _names(body, "arns")


@dataclass(frozen=True, slots=True)
class ListNodes:
    compute_environment: object
    """Only this environment's nodes (as given; None: every environment's)."""
    include_gone: bool

    @classmethod
    def from_body(cls, body: JSON) -> ListNodes:
        return cls(_text(body, "computeEnvironment"), _flag(body, "includeGone"))


@dataclass(frozen=True, slots=True)
class CreateUser:
    """``createUser``: ``name`` (required) and ``role`` (``user`` by default); the rules on
    both are checked by :meth:`mnp.service.users.UserOps.create_user`."""

    name: str
    role: str

    @classmethod
    def from_body(cls, body: JSON) -> CreateUser:
        return cls(required(body, "name"), _text(body, "role") or "user")


# --- hosts of UNMANAGED environments (addHost, removeHost, listHosts) ------------------------
HOST_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_HOST_KEY_RE = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}"
)
_PYTHON_RE = re.compile(r"[A-Za-z0-9_./+-]{1,200}")
_HOST_FIELDS = {
    "computeEnvironment", "name", "address", "port", "user", "identityFile", "hostKey",
    "knownHostsFile", "python", "vcpus", "memoryMiB", "headUrl", "proxyCommand",
}  # fmt: skip


def _head_file(path: object, key: str, errors: list[FieldError]) -> str | None:
    """An absolute path naming a readable file on the head, else an error for ``key``."""
    if path is None:
        return None
    if not isinstance(path, str) or not path.startswith("/"):
        errors.append(FieldError(key, "must be an absolute path on the head node"))
    elif not os.path.isfile(path) or not os.access(path, os.R_OK):
        errors.append(FieldError(key, f"{path} is not a readable file on the head node"))
    else:
        return path
    return None


def _int_in(body: JSON, key: str, low: int, high: int, errors: list[FieldError]) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append(FieldError(key, f"must be a whole number from {low} to {high}"))
        return None
    return value


def _matching(body: JSON, key: str, rule: re.Pattern[str], what: str,
              errors: list[FieldError]) -> str | None:  # fmt: skip
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or rule.fullmatch(value) is None:
        errors.append(FieldError(key, f"must be {what}"))
        return None
    return value


@dataclass(frozen=True, slots=True)
class AddHost:
    """``addHost``: one machine for an UNMANAGED environment, every field checked here."""

    compute_environment: str
    name: str
    address: str
    identity_file: str
    port: int
    user: str
    host_key: str | None
    known_hosts: str | None
    python: str
    vcpus: int | None
    memory_mib: int | None
    head_url: str | None
    proxy_command: str | None = None

    @classmethod
    def from_body(cls, body: JSON) -> AddHost:
        """Raises InvalidInput listing every bad field (unknown ones too)."""
        e: list[FieldError] = [FieldError(k, "unknown field") for k in sorted(body)
                               if k not in _HOST_FIELDS]  # fmt: skip
        for key in ("computeEnvironment", "name", "address", "identityFile"):
            if body.get(key) is None:
                e.append(FieldError(key, "required"))
        ce = _matching(body, "computeEnvironment", re.compile(r"\S{1,128}"), "a name", e)
        name = _matching(body, "name", HOST_NAME_RE,
                         f"a host name matching {HOST_NAME_RE.pattern}", e)  # fmt: skip
        address = _matching(body, "address", _ADDRESS_RE, "an IP address or DNS name", e)
        identity = _head_file(body.get("identityFile"), "identityFile", e)
        known = _head_file(body.get("knownHostsFile"), "knownHostsFile", e)
        host_key = _matching(body, "hostKey", _HOST_KEY_RE,
                             "one public key line, e.g. 'ssh-ed25519 AAAA…'", e)  # fmt: skip
        if (body.get("hostKey") is None) == (body.get("knownHostsFile") is None):
            e.append(FieldError("hostKey", "give exactly one of hostKey (the pinned key) and "
                                "knownHostsFile: a host key is never trusted on first use"))
        port = _int_in(body, "port", 1, 65535, e)
        user = _matching(body, "user", _USER_RE, "a login name", e)
        python = _matching(body, "python", _PYTHON_RE, "a command or path without spaces", e)
        vcpus = _int_in(body, "vcpus", 1, 4096, e)
        memory = _int_in(body, "memoryMiB", 4, 1 << 30, e)
        head_url = _matching(body, "headUrl", re.compile(r"https?://[A-Za-z0-9.:\[\]-]+/?"),
                             "http(s)://host:port", e)  # fmt: skip
        proxy = _matching(body, "proxyCommand", re.compile(r"[^\x00-\x1f\x7f]{1,1000}"),
                          "one line of up to 1000 characters (OpenSSH's ProxyCommand)", e)
        if e:
            raise InvalidInput(e)
        assert ce and name and address and identity  # all required, checked above
        return cls(ce, name, address, identity, port or 22, user or "root", host_key, known,
                   python or "python3", vcpus, memory, head_url, proxy)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RemoveHost:
    """``removeHost``: ``computeEnvironment``, ``name``; ``graceSeconds`` (default 600) is how
    long running work may go on before it is stopped."""

    compute_environment: str
    name: str
    grace_seconds: int

    @classmethod
    def from_body(cls, body: JSON) -> RemoveHost:
        e: list[FieldError] = []
        grace = _int_in(body, "graceSeconds", 0, 86400, e)
        if e:
            raise InvalidInput(e)
        return cls(required(body, "computeEnvironment"), required(body, "name"),
                   600 if grace is None else grace)  # fmt: skip
