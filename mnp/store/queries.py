"""The SQL of a job listing: :class:`JobQuery` (every condition ListJobs can ask for) → one
``SELECT`` and its arguments. Pure; the store runs it.

A page starts where the one before ended (``after``: the last row's place in the order, a
:data:`PageKey`), not at an offset: reading page *n* costs one page, not *n*, and jobs
submitted between pages shift nothing (each lands before the first page: newest first). The
order is the creation time, then the rowid (the order rows were first written, which a save
keeps: :data:`mnp.store.sqlite.SAVE_JOB`); an array's children by index, then rowid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOB_COLUMNS = (
    "job_id, spec_id, parent_id, array_index, queue, name, status, created_at, doc, "
    "definition_arn, share_identifier"
)
"""The columns of a stored job, in the order :meth:`mnp.store.sqlite.Store` reads them."""

PageKey = tuple[int | None, int]
"""A row's place in a listing's order: (creation time, or array index under a parent; rowid)."""
TOP = chr(0x10FFFF)
"""Above every character: ``[p, p + TOP)`` is the range of the texts starting with ``p``."""


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
    """A job-definition ARN prefix, matched case-sensitively as AWS's JOB_DEFINITION filter
    (the whole ARN with :attr:`definition_exact`)."""
    definition_exact: bool = False
    share_identifier: str | None = None
    created_before: int | None = None
    created_after: int | None = None
    newest_first: bool = True
    offset: int = 0
    limit: int = 100
    after: PageKey | None = None
    """Only the rows past this place in the order (a page's last :func:`page_key`)."""

    def fingerprint(self) -> str:
        """What the query selects and in which order, without where a page starts or how
        long it is: a ``nextToken`` is good only for a query with the same fingerprint."""
        return repr((
            self.queue, self.statuses, self.parent_id, self.children, self.name_prefix,
            self.name_exact, self.definition, self.definition_exact, self.share_identifier,
            self.created_before, self.created_after, self.newest_first,
        ))  # fmt: skip


def job_query_sql(q: JobQuery, source: str = "jobs") -> tuple[str, list[Any]]:
    """``SELECT * FROM jobs …`` for ``q``, with its arguments, in the order the listing pages
    (``source``: the table or subquery read, with the columns of ``jobs`` and a ``rowid``)."""
    where, args = _conditions(q)
    if q.after is not None:
        where.append(_after(q, q.after))
        args.extend(_after_args(q, q.after))
    sql = f"SELECT {JOB_COLUMNS}, rowid FROM {source} WHERE " + " AND ".join(where)
    if q.parent_id is not None:
        sql += " ORDER BY array_index, rowid"
    elif q.newest_first:
        sql += " ORDER BY created_at DESC, rowid DESC"
    else:
        sql += " ORDER BY created_at, rowid"
    return sql + " LIMIT ? OFFSET ?", [*args, q.limit, q.offset]


def page_key(q: JobQuery, row: tuple[Any, ...]) -> PageKey:
    """Where a row :func:`job_query_sql` returned stands in ``q``'s order."""
    return (row[3] if q.parent_id is not None else row[7]), row[-1]


def _after(q: JobQuery, key: PageKey) -> str:
    """The condition "past ``key``", written as a range on the ordering column (which the
    index seeks to) and a tie-break on the rowid."""
    if q.parent_id is not None:
        if key[0] is None:  # NULL indexes (a multi-node job's nodes) sort first
            return "(array_index IS NOT NULL OR rowid > ?)"
        return "array_index >= ? AND (array_index > ? OR rowid > ?)"
    if q.newest_first:
        return "created_at <= ? AND (created_at < ? OR rowid < ?)"
    return "created_at >= ? AND (created_at > ? OR rowid > ?)"


def _after_args(q: JobQuery, key: PageKey) -> list[Any]:
    if q.parent_id is not None and key[0] is None:
        return [key[1]]
    return [key[0], key[0], key[1]]


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
    # each condition on a column as it is indexed (mnp.store.sqlite.INDEXES), prefixes as
    # ranges: lower() folds ASCII only, as LIKE did; ARNs compare case-sensitively, as AWS
    if q.name_exact is not None:
        add("lower(name) = lower(?)", q.name_exact)
    if q.name_prefix is not None:
        add("lower(name) >= lower(?) AND lower(name) < lower(?) || ?",
            q.name_prefix, q.name_prefix, TOP)  # fmt: skip
    if q.definition is not None:
        if q.definition_exact:
            add("definition_arn = ?", q.definition)
        else:
            add("definition_arn >= ? AND definition_arn < ?", q.definition, q.definition + TOP)
    if q.share_identifier is not None:
        add("share_identifier = ?", q.share_identifier)
    if q.created_before is not None:
        add("created_at < ?", q.created_before)
    if q.created_after is not None:
        add("created_at > ?", q.created_after)
    return where, args
