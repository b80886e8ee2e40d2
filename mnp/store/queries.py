"""The SQL of a job listing: :class:`JobQuery` (every condition ListJobs can ask for) → one
``SELECT`` and its arguments. Pure; the store runs it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Jobs matching every condition given (None: no condition)."""

    queue: str | None = None
    statuses: list[str] | None = None
    parent_id: str | None = None
    """The children of this array (by index) or multi-node job."""
    children: bool = False
    """Without ``parent_id``: array children too (never the nodes of multi-node jobs)."""
    name_prefix: str | None = None
    name_exact: str | None = None
    definition: str | None = None
    """A job-definition ARN prefix, matched case-sensitively as AWS's JOB_DEFINITION filter."""
    share_identifier: str | None = None
    created_before: int | None = None
    created_after: int | None = None
    newest_first: bool = True
    offset: int = 0
    limit: int = 100


def job_query_sql(q: JobQuery) -> tuple[str, list[Any]]:
    """``SELECT * FROM jobs …`` for ``q``, with its arguments, in the order the listing pages."""
    where, args = _conditions(q)
    sql = "SELECT * FROM jobs WHERE " + " AND ".join(where)
    if q.parent_id is not None:
        sql += " ORDER BY array_index"
    elif q.newest_first:
        sql += " ORDER BY created_at DESC, rowid DESC"
    else:
        sql += " ORDER BY created_at"
    return sql + " LIMIT ? OFFSET ?", [*args, q.limit, q.offset]


def _conditions(q: JobQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        where.append(clause)
        args.extend(values)

    if q.parent_id is not None:
        add("parent_id = ?", q.parent_id)
    elif q.children:  # array children too, not the nodes of multi-node jobs
        add("(parent_id IS NULL OR array_index IS NOT NULL)")
    else:
        add("parent_id IS NULL")
    if q.queue is not None:
        add("queue = ?", q.queue)
    if q.statuses:
        add(f"status IN ({','.join('?' * len(q.statuses))})", *q.statuses)
    if q.name_exact is not None:
        add("lower(name) = lower(?)", q.name_exact)
    if q.name_prefix is not None:
        add("lower(name) LIKE lower(?) ESCAPE '\\'", like_prefix(q.name_prefix))
    if q.definition is not None:
        # GLOB: case-sensitive, as AWS's JOB_DEFINITION filter; specials matched literally
        add("spec_id IN (SELECT spec_id FROM job_specs WHERE doc GLOB ?)",
            f'*"definition_arn":"{glob_literal(q.definition)}*')
    if q.share_identifier is not None:
        add("spec_id IN (SELECT spec_id FROM job_specs WHERE doc GLOB ?)",
            f'*"share_identifier":{glob_literal(json.dumps(q.share_identifier))}*')
    if q.created_before is not None:
        add("created_at < ?", q.created_before)
    if q.created_after is not None:
        add("created_at > ?", q.created_after)
    return where, args


def glob_literal(text: str) -> str:
    """``text`` matched literally inside a GLOB pattern."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (``ESCAPE '\\'``) for values starting with ``prefix``."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
