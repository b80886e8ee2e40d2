"""Status changes → events → the outbox, the tail's buffer and the deliveries.

The scheduler's one status-change path (:meth:`HeadState.set_status`) tells :meth:`EventBus.
observe` of each change. Nothing is done unless someone listens (a rule exists, or a tail
follows): then the job is rendered as DescribeJobs shows it on the AWS wire and wrapped in
EventBridge's envelope (:func:`envelope`), and the event waits in memory for the store's
next commit. At that commit (:meth:`before_commit`, inside the transaction that saves the
change) each rule whose pattern matches adds one outbox row per destination (a webhook, or
each subscriber of a topic), so an event is kept exactly when its change is and survives a
restart; after it (:meth:`after_commit`) the events join the tail's buffer and the
delivery task is woken. A rolled-back transaction drops them with the changes they
describe. As AWS Batch does, there is no event for a job's creation (its SUBMITTED status,
or an array child's first PENDING): only for changes of an existing job.

The delivery task (:meth:`EventBus.run`) runs on the head's loop beside the scheduler and
only awaits: a destination gets its events one at a time, in order (the next waits while
the first is retried), destinations are served side by side, and a delivery that fails
:data:`~.delivery.MAX_ATTEMPTS` times becomes a dead letter (the newest
:data:`~mnp.store.events.DEAD_LETTERS_KEPT` are kept).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mnp.errors import MnpError
from mnp.service.events import delivery
from mnp.service.events.patterns import matches
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus
from mnp.store.events import Delivery
from mnp.store.sqlite import Store

log = logging.getLogger("mnp.events")

JSON = dict[str, Any]
DETAIL_TYPE = "Batch Job State Change"
SOURCE = "aws.batch"
BUFFERED = 10_000
"""How many recent events the tail can start from."""
PARALLEL = 16
"""Destinations served at once."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def envelope(detail: JSON, now_ms: int, event_id: str | None = None) -> JSON:
    """EventBridge's event around ``detail`` (a JobDetail): account and region are the
    job ARN's, so they agree with every ARN inside."""
    arn = str(detail.get("jobArn", ""))
    parts = arn.split(":")
    region, account = (parts[3], parts[4]) if len(parts) > 5 else ("local", "000000000000")
    at = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account,
        "time": at,
        "region": region,
        "resources": [arn],
        "detail": detail,
    }


@dataclass(frozen=True, slots=True)
class Buffered:
    seq: int
    owner: str | None
    """Who submitted the job (None: the head's owner): who may see the event in a tail."""
    event: JSON


class EventBus:
    """The events of one head: rules and topics (memory mirrors the store), the pending and
    recent events, the deliveries."""

    def __init__(
        self,
        store: Store,
        render: Callable[[Job], JSON],
        clock: Callable[[], int] = wall_ms,
        base_delay: float = delivery.BASE_DELAY_SECONDS,
        max_attempts: int = delivery.MAX_ATTEMPTS,
        timeout: float = delivery.TIMEOUT_SECONDS,
    ) -> None:
        self.store = store
        self.render = render
        self.clock = clock
        self.base_delay = base_delay
        self.max_attempts = max_attempts
        self.timeout = timeout
        tables = store.events
        self.rules: dict[str, JSON] = tables.load("rule")
        self.topics: dict[str, JSON] = tables.load("topic")
        self._pending: list[Buffered] = []
        self.recent: deque[Buffered] = deque(maxlen=BUFFERED)
        self.seq = 0
        self.followers = 0
        self.delivered = 0
        self.failed_tries = 0
        self.dead_lettered = 0
        self._new = asyncio.Event()
        self._wake = asyncio.Event()
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        store.before_commit = self.before_commit
        store.after_commit = self.after_commit
        store.after_rollback = self.after_rollback

    # --- from the scheduler: cheap, never blocks --------------------------------------------
    @property
    def listening(self) -> bool:
        return bool(self.rules) or self.followers > 0

    def observe(self, job: Job, old: JobStatus) -> None:
        """A status change (HeadState.on_status): make its event if anyone listens."""
        if not self.listening:
            return
        try:
            event = envelope(self.render(job), self.clock())
        except Exception:  # an event must never break a status change
            log.exception("no event for job %s", job.job_id)
            return
        self._pending.append(Buffered(0, job.submitted_by, event))

    def before_commit(self) -> None:
        """Inside the transaction saving the changes: their deliveries join the outbox."""
        if not self._pending or not self.rules:
            return
        rows: list[tuple[str, JSON, str, str, str]] = []
        try:
            for item in self._pending:
                body = json.dumps(item.event, separators=(",", ":"))
                for name, rule in self.rules.items():
                    if matches(rule.get("pattern") or {}, item.event):
                        rows += self._rows(name, rule, item.event["id"], body)
        except Exception:  # a bad event must not fail the scheduler's write
            log.exception("events dropped: could not route them")
            self._pending.clear()
            return
        if rows:
            self.store.events.enqueue(rows, self.clock())
            self._wake.set()

    def _rows(self, name: str, rule: JSON, event_id: str, body: str) -> list[Any]:
        rows: list[Any] = []
        for i, target in enumerate(rule.get("targets", [])):
            if target.get("kind") == "topic":
                topic = self.topics.get(str(target.get("topic")))
                if topic is None:
                    continue
                for sub in topic.get("subscriptions", []):
                    key = f"topic/{topic['name']}/{sub['id']}"
                    rows.append((key, sub, f"topic/{topic['name']}", event_id, body))
            else:
                rows.append((f"rule/{name}/{i}", target, f"rule/{name}", event_id, body))
        return rows

    def after_commit(self) -> None:
        if not self._pending:
            return
        for item in self._pending:
            self.seq += 1
            self.recent.append(Buffered(self.seq, item.owner, item.event))
        self._pending.clear()
        self._new.set()
        self._new = asyncio.Event()

    def after_rollback(self) -> None:
        """The changes were not saved: neither are their events."""
        self._pending.clear()
        self._wake.set()  # a delivery's own write may have failed: look again

    # --- rules and topics (admins; through the store, then memory) -------------------------
    def save(self, kind: str, name: str, doc: JSON) -> None:
        with self.store.transaction():
            self.store.events.save(kind, name, doc)
        (self.rules if kind == "rule" else self.topics)[name] = doc

    def delete(self, kind: str, name: str) -> bool:
        with self.store.transaction():
            gone = self.store.events.delete(kind, name)
        (self.rules if kind == "rule" else self.topics).pop(name, None)
        return gone

    # --- the tail --------------------------------------------------------------------------
    async def follow(
        self, visible: Callable[[Buffered], bool], after: int | None, follow: bool
    ) -> AsyncIterator[JSON]:
        """The events after sequence number ``after`` (None: from now) that ``visible``
        lets through, as they come while ``follow``; else only those buffered."""
        self.followers += 1
        try:
            seq = self.seq if after is None else after
            while True:
                new = self._new
                for item in list(self.recent):
                    if item.seq > seq:
                        seq = item.seq
                        if visible(item):
                            yield {"seq": item.seq, "event": item.event}
                if not follow:
                    return
                await new.wait()
        finally:
            self.followers -= 1

    # --- delivery --------------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver what the outbox holds, for as long as the head runs (cancel to stop)."""
        semaphore = asyncio.Semaphore(PARALLEL)
        while True:
            self._wake.clear()
            wait: float | None = None
            try:
                heads = self.store.events.heads()
            except Exception:
                log.exception("cannot read the event outbox")
                heads, wait = [], 1.0
            now = self.clock()
            for d in heads:
                if d.target_key in self._inflight:
                    continue
                if d.next_at > now:
                    later = (d.next_at - now) / 1000
                    wait = later if wait is None else min(wait, later)
                    continue
                self._inflight.add(d.target_key)
                task = asyncio.create_task(self._deliver(d, semaphore))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    async def _deliver(self, d: Delivery, semaphore: asyncio.Semaphore) -> None:
        try:
            async with semaphore:
                error = await self._try(d)
            self._record(d, error)
        finally:
            self._inflight.discard(d.target_key)
            self._wake.set()

    async def _try(self, d: Delivery) -> str | None:
        body = d.body.encode()
        try:
            if d.target.get("kind") == "command":
                await delivery.run_command(str(d.target["command"]), d.event_id, body, self.timeout)
            else:
                await delivery.send_webhook(
                    str(d.target["url"]), str(d.target.get("secret") or ""), d.event_id, body,
                    self.timeout,
                )  # fmt: skip
        except delivery.DeliveryFailed as e:
            return str(e)
        except Exception as e:  # a destination must not stop the task
            log.exception("delivery %d failed", d.id)
            return f"{type(e).__name__}: {e}"
        return None

    def _record(self, d: Delivery, error: str | None) -> None:
        attempts = d.attempts + 1
        now = self.clock()
        try:
            with self.store.transaction():
                if error is None:
                    self.store.events.delivered(d.id)
                elif delivery.gives_up(attempts, self.max_attempts):
                    self.store.events.dead_letter(d.id, attempts, error, now)
                else:
                    delay = delivery.backoff(attempts, self.base_delay)
                    self.store.events.retry_later(d.id, attempts, now + int(delay * 1000), error)
        except MnpError as e:  # the store cannot write: the row stays due, tried again
            log.warning("could not record delivery %d: %s", d.id, e)
            return
        if error is None:
            self.delivered += 1
        else:
            self.failed_tries += 1
            log.info("event %s to %s: try %d failed: %s", d.event_id, d.source, attempts, error)
            if delivery.gives_up(attempts, self.max_attempts):
                self.dead_lettered += 1
                log.warning("event %s to %s is a dead letter: %s", d.event_id, d.source, error)

    async def stop(self) -> None:
        """Cancel the deliveries under way (their rows stay: tried again after a restart)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
