"""AWS Batch ARNs for mnp's resources: in the region a request was signed for, and the
head's account.

Which region: an AWS request's SigV4 credential scope (the AWS front door runs each
operation inside :func:`signed_for`), so a client configured for ``eu-central-1`` sees
``arn:aws:batch:eu-central-1:…`` as it would on AWS; everything else (the native API, the
CLI, the scheduler) uses ``$MNP_REGION``, default ``local``: a head has no region of its
own, and ``local`` says these are no real AWS resources (and is what heads have always
shown). Which account: ``$MNP_ACCOUNT_ID`` (12 digits), default ``000000000000``.

ARNs kept in the store (a job's definition, a queue's scheduling policy) are in one fixed
form, :data:`ARN_PREFIX` (``local`` / ``000000000000``, what every head has written), so
the store's queries by ARN find them whatever region asks or the account a head has now:
:func:`stored` turns any of mnp's ARNs into that form, :func:`shown` into the caller's.
ARNs sent in name their resource by what follows ``:<kind>/`` (:func:`name_from_arn`),
whatever region and account they say.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

REGION = "local"
ACCOUNT = "000000000000"
ARN_PREFIX = f"arn:aws:batch:{REGION}:{ACCOUNT}"
"""The form of the ARNs kept in the store (and of every ARN when nothing is configured)."""

REGION_ENV = "MNP_REGION"
ACCOUNT_ENV = "MNP_ACCOUNT_ID"
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_ACCOUNT = re.compile(r"[0-9]{12}")


@dataclass(frozen=True, slots=True)
class Scope:
    """The region and account the ARNs of one request are written in."""

    region: str
    account: str


_scope: ContextVar[Scope | None] = ContextVar("mnp_arn_scope", default=None)


def region_setting() -> str:
    """``$MNP_REGION`` (default ``local``); raises ValueError naming the variable for
    anything but an AWS-style region name."""
    value = os.environ.get(REGION_ENV, "").strip() or REGION
    if not _REGION.fullmatch(value):
        raise ValueError(f"{REGION_ENV}={value!r}: must be a region name such as us-east-1")
    return value


def account_setting() -> str:
    """``$MNP_ACCOUNT_ID`` (default ``000000000000``); raises ValueError naming the variable
    for anything but 12 digits, as AWS account ids are."""
    value = os.environ.get(ACCOUNT_ENV, "").strip() or ACCOUNT
    if not _ACCOUNT.fullmatch(value):
        raise ValueError(f"{ACCOUNT_ENV}={value!r}: must be an AWS account id (12 digits)")
    return value


_own: tuple[str | None, str | None, Scope] | None = None
"""The head's own scope, with the two variables' values it was read from."""


def own() -> Scope:
    """The head's own scope (``$MNP_REGION``, ``$MNP_ACCOUNT_ID``), checked once per value
    the variables take: every ARN a request writes asks for it."""
    global _own
    region, account = os.environ.get(REGION_ENV), os.environ.get(ACCOUNT_ENV)
    if _own is None or _own[0] != region or _own[1] != account:
        _own = (region, account, Scope(region_setting(), account_setting()))
    return _own[2]


def current() -> Scope:
    """The scope of the request being answered, else the head's own."""
    scope = _scope.get()
    return scope if scope is not None else own()


@contextmanager
def signed_for(region: str | None) -> Iterator[Scope]:
    """ARNs in ``region`` (a SigV4 credential scope's) while the block runs; a region that
    is no region name (anything a signer may put there) or None: the head's own."""
    given = region if region is not None and _REGION.fullmatch(region) else None
    scope = Scope(given, own().account) if given else own()
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def prefix(service: str = "batch") -> str:
    """``arn:aws:<service>:<region>:<account>`` in the current scope."""
    scope = current()
    return f"arn:aws:{service}:{scope.region}:{scope.account}"


def queue_arn(name: str) -> str:
    return f"{prefix()}:job-queue/{name}"


def ce_arn(name: str) -> str:
    return f"{prefix()}:compute-environment/{name}"


def job_definition_arn(name: str, revision: int) -> str:
    return f"{prefix()}:job-definition/{name}:{revision}"


def job_arn(job_id: str) -> str:
    return f"{prefix()}:job/{job_id}"


def scheduling_policy_arn(name: str) -> str:
    return f"{prefix()}:scheduling-policy/{name}"


def _resource(arn: str) -> str | None:
    """What follows ``arn:aws:batch:<region>:<account>:`` (None: not a Batch ARN)."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "batch":
        return parts[5]
    return None


def stored(arn: str) -> str:
    """A Batch ARN of any region and account in the store's form; anything else as it is."""
    resource = _resource(arn)
    return arn if resource is None else f"{ARN_PREFIX}:{resource}"


def shown(arn: str) -> str:
    """A Batch ARN (a stored one, say) in the current scope; anything else as it is."""
    resource = _resource(arn)
    return arn if resource is None else f"{prefix()}:{resource}"


def name_from_arn(value: str, kind: str) -> str:
    """``arn:…:<kind>/<name>`` → ``<name>``; a plain name is returned as it is."""
    marker = f":{kind}/"
    if value.startswith("arn:") and marker in value:
        return value.split(marker, 1)[1]
    return value
