"""Kills and Readies on their way to the nodes: each delivered at least once, kept until the
node's polls show it took effect, and rebuilt from the stored job state after a restart.

A Kill is kept while its attempt runs there (the head still holds it, or the node still
lists it) and goes again every :data:`RESEND_AFTER_MS` while the node lists the attempt as
running; a Ready goes again while the node lists its attempt as running but not yet ready.
The agent ignores what it has already applied, so a repeat is harmless. Single-threaded:
called on the head's event loop only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mnp.spec.protocol import Kill, Ready

RESEND_AFTER_MS = 2_000
"""How long a sent Kill or Ready waits for its effect before it goes again."""
NEVER = -1
"""``sent_at`` of a message not sent yet: it goes with the node's next poll."""


@dataclass(slots=True)
class _Pending:
    kills: dict[str, tuple[Kill, int]] = field(default_factory=dict)
    ready: dict[str, tuple[Ready, int]] = field(default_factory=dict)


class Control:
    """The Kills and Readies not yet known to have taken effect, by node and attempt id."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Pending] = {}

    def kill(self, node_id: str, kill: Kill) -> None:
        """Queue ``kill`` for the node; a kill already queued for the attempt keeps its
        reason (the first stop's reason is the one reported) and its resend time."""
        kills = self._nodes.setdefault(node_id, _Pending()).kills
        kills.setdefault(kill.attempt_id, (kill, NEVER))

    def ready(self, node_id: str, ready: Ready) -> None:
        """Queue ``ready`` for the node (idempotent)."""
        pending = self._nodes.setdefault(node_id, _Pending()).ready
        pending.setdefault(ready.attempt_id, (ready, NEVER))

    def forget_node(self, node_id: str) -> None:
        """The node is gone: nothing more goes to it."""
        self._nodes.pop(node_id, None)

    def kills_due(self, node_id: str, listed: set[str], held: set[str], now: int) -> list[Kill]:
        """The kills to send with this poll: new ones, and those sent over
        :data:`RESEND_AFTER_MS` ago whose attempt the node still ``listed`` as running. A kill
        whose attempt neither the node lists nor the head ``held`` took effect: dropped."""
        pending = self._nodes.get(node_id)
        if pending is None:
            return []
        due: list[Kill] = []
        for aid, (kill, sent_at) in list(pending.kills.items()):
            if aid not in listed and aid not in held:
                del pending.kills[aid]
            elif sent_at == NEVER or (aid in listed and now - sent_at > RESEND_AFTER_MS):
                due.append(kill)
                pending.kills[aid] = (kill, now)
        return due

    def ready_due(self, node_id: str, listed: set[str], done: set[str], now: int) -> list[Ready]:
        """The Readies to send with this poll: new ones, and those sent over
        :data:`RESEND_AFTER_MS` ago to an attempt the node lists as running but not ready. A
        Ready the node reports ``done``, or whose attempt it no longer lists, is dropped."""
        pending = self._nodes.get(node_id)
        if pending is None:
            return []
        due: list[Ready] = []
        for aid, (ready, sent_at) in list(pending.ready.items()):
            if aid in done or (sent_at != NEVER and aid not in listed):
                del pending.ready[aid]
            elif sent_at == NEVER or now - sent_at > RESEND_AFTER_MS:
                due.append(ready)
                pending.ready[aid] = (ready, now)
        return due
