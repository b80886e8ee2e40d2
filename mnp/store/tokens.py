"""The submit-once record: which job an idempotency token made, so a retried SubmitJob is
answered with the first submission's job instead of making a second one.

One ``submit_tokens`` row per token: a fingerprint of the request it came with (so the same
token with a different request is told apart), the answer given, and when. The head writes
the row in the same transaction as the job (:meth:`mnp.service.jobs.JobOps.submit`), so a
crash after the commit and before the reply still dedupes the retry. Rows older than the
retention window are ignored by :meth:`SubmitTokens.find` and dropped by
:meth:`SubmitTokens.prune`, which the head runs now and then (not on every submission: it
costs as much as the insert).

Not thread-safe: the store's one owner uses it (see :mod:`mnp.store.sqlite`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

TABLE = """
CREATE TABLE IF NOT EXISTS submit_tokens (
    token TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, job_id TEXT NOT NULL,
    answer TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS submit_tokens_created ON submit_tokens (created_at);
"""


@dataclass(frozen=True, slots=True)
class SubmitToken:
    """A token already used: the request it came with (fingerprint) and what it was told."""

    token: str
    fingerprint: str
    job_id: str
    answer: dict[str, Any]
    created_at: int


class SubmitTokens:
    """The ``submit_tokens`` table of one store's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def find(self, token: str, since: int) -> SubmitToken | None:
        """The record of ``token`` made at or after ``since`` (epoch ms), if any."""
        row = self.db.execute(
            "SELECT token, fingerprint, job_id, answer, created_at FROM submit_tokens "
            "WHERE token = ? AND created_at >= ?",
            (token, since),
        ).fetchone()
        if row is None:
            return None
        token, fingerprint, job_id, answer, created_at = row
        return SubmitToken(token, fingerprint, job_id, json.loads(answer), created_at)

    def record(self, entry: SubmitToken) -> None:
        """Write ``entry``; raises ``sqlite3.IntegrityError`` if its token still has a record
        (find it first, prune expired ones). Call inside the transaction that saves the job."""
        self.db.execute(
            "INSERT INTO submit_tokens VALUES (?, ?, ?, ?, ?)",
            (
                entry.token,
                entry.fingerprint,
                entry.job_id,
                json.dumps(entry.answer, separators=(",", ":")),
                entry.created_at,
            ),
        )

    def prune(self, before: int) -> None:
        """Drop the records made before ``before`` (epoch ms): past the retention window."""
        self.db.execute("DELETE FROM submit_tokens WHERE created_at < ?", (before,))
