"""The tables of job state-change events: rules, topics, and the outbox of deliveries.

A rule (``event_rules``) and a topic (``event_topics``) are one JSON document each, by name.
The outbox (``event_outbox``) holds one row per event and destination still to deliver: it
is written in the same transaction as the job change that made the event (the store's
``before_commit`` hook, :mod:`mnp.service.events.bus`), so an event is kept exactly when its
change is, and a head restart finds what was not yet delivered. A delivered row is deleted;
one that failed its last try becomes a dead letter (``dead = 1``), of which only the newest
:data:`DEAD_LETTERS_KEPT` stay.

Not thread-safe: the store's one owner uses it (see :mod:`mnp.store.sqlite`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TABLE = """
CREATE TABLE IF NOT EXISTS event_rules (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_topics (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS event_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, target_key TEXT NOT NULL, target TEXT NOT NULL,
    source TEXT NOT NULL, event_id TEXT NOT NULL, body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
    last_error TEXT, dead INTEGER NOT NULL DEFAULT 0, dead_at INTEGER);
CREATE INDEX IF NOT EXISTS event_outbox_live ON event_outbox (dead, target_key, id);
"""

DEAD_LETTERS_KEPT = 1000
"""How many dead letters are kept (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one destination."""

    id: int
    target_key: str
    """Deliveries with the same key go out one at a time, in the order they were made."""
    target: dict[str, Any]
    """Where to: ``{"kind": "webhook", "url", "secret"}`` or ``{"kind": "command", ...}``."""
    source: str
    """What sent it there: ``rule/NAME`` or ``topic/NAME``."""
    event_id: str
    body: str
    attempts: int
    next_at: int
    created_at: int
    last_error: str | None = None
    dead_at: int | None = None

    def public(self) -> dict[str, Any]:
        """As the API shows it: the destination without its secret, the event parsed."""
        target = {k: v for k, v in self.target.items() if k != "secret"}
        return {
            "id": self.id,
            "source": self.source,
            "target": target,
            "eventId": self.event_id,
            "event": json.loads(self.body),
            "attempts": self.attempts,
            "createdAt": self.created_at,
            "lastError": self.last_error,
            "deadAt": self.dead_at,
        }


_COLUMNS = (
    "id, target_key, target, source, event_id, body, attempts, next_at, created_at, "
    "last_error, dead_at"
)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    id_, key, target, source, event_id, body, attempts, next_at, created, error, dead_at = row
    return Delivery(
        id_, key, json.loads(target), source, event_id, body, attempts, next_at, created,
        error, dead_at,
    )  # fmt: skip


class EventTables:
    """The event tables of one store's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # --- rules and topics ---------------------------------------------------------------------
    def load(self, kind: str) -> dict[str, dict[str, Any]]:
        """Every rule (``kind`` "rule") or topic ("topic") by name."""
        rows = self.db.execute(f"SELECT name, doc FROM event_{kind}s ORDER BY name")
        return {name: json.loads(doc) for name, doc in rows}

    def save(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO event_{kind}s VALUES (?, ?)", (name, json.dumps(doc))
        )

    def delete(self, kind: str, name: str) -> bool:
        cur = self.db.execute(f"DELETE FROM event_{kind}s WHERE name = ?", (name,))
        return cur.rowcount > 0

    # --- the outbox ---------------------------------------------------------------------------
    def enqueue(self, rows: Iterable[tuple[str, dict[str, Any], str, str, str]], now: int) -> None:
        """Add deliveries (target key, target, source, event id, body), due ``now``."""
        self.db.executemany(
            "INSERT INTO event_outbox (target_key, target, source, event_id, body, next_at, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(k, json.dumps(t), s, e, b, now, now) for k, t, s, e, b in rows],
        )

    def heads(self) -> list[Delivery]:
        """The oldest live delivery of each destination (the only one that may go out: a
        destination gets its events in order)."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM event_outbox WHERE id IN "
            "(SELECT min(id) FROM event_outbox WHERE dead = 0 GROUP BY target_key) ORDER BY id"
        )
        return [_delivery(r) for r in rows]

    def delivered(self, delivery_id: int) -> None:
        self.db.execute("DELETE FROM event_outbox WHERE id = ?", (delivery_id,))

    def retry_later(self, delivery_id: int, attempts: int, next_at: int, error: str) -> None:
        self.db.execute(
            "UPDATE event_outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
            (attempts, next_at, error[:1000], delivery_id),
        )

    def dead_letter(
        self, delivery_id: int, attempts: int, error: str, now: int, keep: int = DEAD_LETTERS_KEPT
    ) -> None:
        """Give up on a delivery: it becomes a dead letter; beyond ``keep`` the oldest go."""
        self.db.execute(
            "UPDATE event_outbox SET dead = 1, dead_at = ?, attempts = ?, last_error = ? "
            "WHERE id = ?",
            (now, attempts, error[:1000], delivery_id),
        )
        self.db.execute(
            "DELETE FROM event_outbox WHERE dead = 1 AND id NOT IN "
            "(SELECT id FROM event_outbox WHERE dead = 1 ORDER BY id DESC LIMIT ?)",
            (keep,),
        )

    def dead_letters(self, limit: int = DEAD_LETTERS_KEPT) -> list[Delivery]:
        """The dead letters, newest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM event_outbox WHERE dead = 1 ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [_delivery(r) for r in rows]

    def purge_dead(self) -> int:
        return self.db.execute("DELETE FROM event_outbox WHERE dead = 1").rowcount

    def counts(self) -> tuple[int, int]:
        """(live deliveries, dead letters)."""
        row = self.db.execute(
            "SELECT coalesce(sum(dead = 0), 0), coalesce(sum(dead = 1), 0) FROM event_outbox"
        ).fetchone()
        return int(row[0]), int(row[1])
