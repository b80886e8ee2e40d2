"""The ``users`` table: the people an admin let use this head besides its owner.

One row per user: the login-style name, the role (``user`` or ``admin``), the sha256 of the
user's native API token (the token itself is never kept: it is shown once, at creation), the
user's AWS access key id and its secret, and when the row was made.

Why the AWS secret is kept in clear: SigV4 signatures are HMACs keyed by (a derivation of)
the secret, so the head must hold it to check them, as AWS does. It lives only here, in the
store that :mod:`mnp.store.sqlite` keeps mode 0600 inside the head's 0700 home, readable by
the head's own account alone; it never leaves through an answer after ``createUser``.

Not thread-safe: the store's one owner uses it (see :mod:`mnp.store.sqlite`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

TABLE = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, token_sha256 TEXT NOT NULL UNIQUE,
    access_key_id TEXT NOT NULL UNIQUE, secret_access_key TEXT NOT NULL,
    created_at INTEGER NOT NULL);
"""

_COLUMNS = "name, role, token_sha256, access_key_id, secret_access_key, created_at"


@dataclass(frozen=True, slots=True)
class UserRow:
    """One user as stored (see the module doc for what each secret field is)."""

    name: str
    role: str
    token_sha256: str
    access_key_id: str
    secret_access_key: str
    created_at: int

    def __repr__(self) -> str:  # never print a secret by accident
        return f"UserRow({self.name!r}, role={self.role!r}, key={self.access_key_id!r})"


class Users:
    """The ``users`` table of one store's connection. Writes go inside the store's
    :meth:`~mnp.store.sqlite.Store.transaction`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def add(self, row: UserRow) -> None:
        """Insert ``row``; raises ``sqlite3.IntegrityError`` if the name (or, by a
        one-in-2^100 chance, the token hash or key id) is taken: look it up first."""
        self.db.execute(
            f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            (row.name, row.role, row.token_sha256, row.access_key_id, row.secret_access_key,
             row.created_at),
        )  # fmt: skip

    def remove(self, name: str) -> bool:
        """Delete the user ``name``; False when there was none."""
        return self.db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def _one(self, column: str, value: str) -> UserRow | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM users WHERE {column} = ?", (value,)
        ).fetchone()
        return None if row is None else UserRow(*row)

    def by_name(self, name: str) -> UserRow | None:
        return self._one("name", name)

    def by_token_hash(self, digest: str) -> UserRow | None:
        return self._one("token_sha256", digest)

    def by_access_key(self, access_key_id: str) -> UserRow | None:
        return self._one("access_key_id", access_key_id)

    def all(self) -> list[UserRow]:
        """Every user, by name."""
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")
        return [UserRow(*r) for r in rows]
