"""Credentials for the jobs themselves: what lets a running job call the head (AWS's Batch
and CloudWatch Logs API through boto3 or the aws CLI, mnp's own commands) as its submitter,
limited by its role (:mod:`mnp.service.roles`), for as long as its attempt runs.

Each attempt has its own credentials, derived from the head's secret (``<home>/job-keys``,
made once, mode 0600) and the attempt id with HMAC-SHA256, so nothing per attempt is stored
and a restarted head accepts the keys of the attempts still running:

- an AWS key as ECS hands a task's role: an access key id ``MNPJ…`` (20 characters), a
  secret, and a session token that every request must carry (``X-Amz-Security-Token``);
- a native token ``mnpj.<attempt id, base64url>.<mac>`` for ``MNP_TOKEN``.

The head hands them to the node with the assignment; the node's agent serves the AWS key to
the job through the container credentials provider (:mod:`launcher.credentials`). A key is
valid while its attempt is the job's current one and has not ended: a finished, requeued or
retried attempt's key is refused from its end on.

Not thread-safe: call from the head node's event loop.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mnp.scheduler.state import HeadState
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus

SECRET_FILE = "job-keys"
KEY_PREFIX = "MNPJ"
TOKEN_PREFIX = "mnpj."
_LIVE = (JobStatus.STARTING, JobStatus.RUNNING)
_REINDEX_EVERY_MS = 2_000
"""A key id not in the index makes the index be rebuilt from the live attempts at most this
often (a restarted head learns the running attempts' keys; a flood of made-up ids costs one
rebuild per interval)."""
_MIN_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class AttemptKeys:
    """One attempt's credentials (secrets: never logged)."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    native_token: str

    def __repr__(self) -> str:
        return f"AttemptKeys({self.access_key_id!r})"

    def to_wire(self) -> dict[str, str]:
        return {
            "accessKeyId": self.access_key_id,
            "secretAccessKey": self.secret_access_key,
            "sessionToken": self.session_token,
            "nativeToken": self.native_token,
        }


def attempt_id(job: Job) -> str | None:
    """The id of the job's attempt that may use credentials now (None: none may)."""
    attempt = job.current_attempt
    if attempt is None or attempt.stopped_at is not None or job.status not in _LIVE:
        return None
    return f"{job.job_id}/{attempt.number}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(home: Path) -> bytes:
    """The head's job-key secret, made on first use (32 random bytes, mode 0600)."""
    path = home / SECRET_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        return raw
    if len(raw) < 32:
        raise ValueError(f"{path}: the job-key secret is damaged (remove it; running jobs' "
                         "keys then stop working)")  # fmt: skip
    return raw


class JobKeys:
    """Derives attempts' credentials and finds the attempt a key or token belongs to.

    ``jobs`` looks up a job by id (the head's live jobs); ``clock`` is the head's (ms)."""

    def __init__(
        self,
        secret: bytes,
        jobs: Callable[[str], Job | None],
        live: Callable[[], Iterable[Job]],
        clock: Callable[[], int],
    ) -> None:
        self._secret = secret
        self._jobs = jobs
        self._live = live
        self._clock = clock
        self._index: dict[str, str] = {}
        """access key id → attempt id, for the attempts keys were handed out for."""
        self._indexed_at = -_REINDEX_EVERY_MS
        self._limit = _MIN_LIMIT

    def _mac(self, purpose: str, attempt: str) -> bytes:
        data = f"{purpose}\0{attempt}".encode("utf-8", "surrogatepass")
        return hmac.digest(self._secret, data, "sha256")  # one C call (hmac.new: a few objects)

    def _key_id(self, attempt: str) -> str:
        # 16 base32 characters are the MAC's first 10 bytes (base32 codes 5 bytes at a time)
        return KEY_PREFIX + base64.b32encode(self._mac("key", attempt)[:10]).decode()

    def for_attempt(self, attempt: str) -> AttemptKeys:
        """The credentials of attempt ``attempt`` (``<job id>/<number>``); remembered so
        that a request signed with them finds the attempt."""
        key_id = self._key_id(attempt)
        if key_id not in self._index and len(self._index) >= self._limit:
            self._reindex()  # drops ended attempts: the index follows the live ones
            self._limit = max(_MIN_LIMIT, 2 * len(self._index))
        self._index[key_id] = attempt
        mac = _b64(self._mac("native", attempt))
        return AttemptKeys(
            access_key_id=key_id,
            secret_access_key=_b64(self._mac("secret", attempt))[:40],
            session_token=_b64(self._mac("session", attempt)),
            native_token=f"{TOKEN_PREFIX}{_b64(attempt.encode('utf-8', 'surrogatepass'))}.{mac}",
        )

    def _live_job(self, attempt: str) -> Job | None:
        job_id = attempt.rpartition("/")[0]
        job = self._jobs(job_id)
        if job is None or attempt_id(job) != attempt:
            return None
        return job

    def by_access_key(self, key_id: str) -> tuple[Job, AttemptKeys] | None:
        """The live job whose current attempt's key is ``key_id``, with its credentials."""
        if not key_id.startswith(KEY_PREFIX):
            return None
        attempt = self._index.get(key_id)
        if attempt is None and self._clock() - self._indexed_at >= _REINDEX_EVERY_MS:
            self._reindex()
            attempt = self._index.get(key_id)
        if attempt is None:
            return None
        job = self._live_job(attempt)
        if job is None:
            self._index.pop(key_id, None)
            return None
        return job, self.for_attempt(attempt)

    def by_token(self, token: str) -> Job | None:
        """The live job whose current attempt's native token is ``token``."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        encoded, _, mac = token[len(TOKEN_PREFIX) :].partition(".")
        try:
            attempt = _unb64(encoded).decode("utf-8", "surrogatepass")
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac, _b64(self._mac("native", attempt))):
            return None
        return self._live_job(attempt)

    def _reindex(self) -> None:
        """Rebuild the index from the attempts running now (it forgets ended ones)."""
        self._indexed_at = self._clock()
        self._index.clear()
        for job in self._live():
            attempt = attempt_id(job)
            if attempt is not None:
                self._index[self._key_id(attempt)] = attempt


_BY_STATE: weakref.WeakKeyDictionary[HeadState, JobKeys] = weakref.WeakKeyDictionary()


def job_keys(state: HeadState) -> JobKeys:
    """The one :class:`JobKeys` of a head (the scheduler mints keys, the front doors look
    them up: one index)."""
    keys = _BY_STATE.get(state)
    if keys is None:
        keys = JobKeys(
            load_secret(state.config.home), state.active.get, lambda: state.active.values(),
            state.clock,
        )  # fmt: skip
        _BY_STATE[state] = keys
    return keys
