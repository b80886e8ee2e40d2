"""The native API's event operations: rules, topics and their subscriptions, dead letters.

Admins only (each is an :class:`~mnp.service.operations.Operation` with ``admin=True``): a
rule's webhook receives every matching event, whoever's job it is, and a command subscriber
runs on the head as the head's account. Secrets are write-only: lists show a destination
without its secret. ``mnp events`` (:mod:`mnp.cli.events`) calls these.

- ``putEventRule`` ``{name, pattern?, targets: [{webhook, secret?} | {topic}], description?}``
  creates or replaces a rule (pattern: :mod:`.patterns`; none matches every event);
- ``listEventRules``, ``deleteEventRule {name}``;
- ``createEventTopic {name}``, ``listEventTopics``, ``deleteEventTopic {name}``;
- ``subscribeEventTopic {topic, webhook, secret?}`` or ``{topic, command}`` → ``{subscriptionId}``,
  ``unsubscribeEventTopic {topic, subscriptionId}``;
- ``listDeadLetters {maxResults?}`` (newest first), ``purgeDeadLetters``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any

from mnp.errors import Conflict, FieldError, InvalidInput, NotFound
from mnp.service.core import Service
from mnp.service.events import delivery, patterns
from mnp.service.events.bus import EventBus
from mnp.service.operations import Handler, Operation
from mnp.service.users import Caller

JSON = dict[str, Any]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_TARGETS = 5


def _name(body: JSON, key: str = "name") -> str:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidInput([FieldError(key, "required: letters, digits, _ . - (up to 64)")])
    return value


def _secret(body: JSON, where: str) -> str:
    value = body.get("secret", "")
    if not isinstance(value, str):
        raise InvalidInput([FieldError(f"{where}.secret", "must be a string")])
    return value


def _webhook(body: JSON, where: str) -> JSON:
    url = body.get("webhook")
    why = delivery.check_url(url) if isinstance(url, str) else "must be a URL"
    if why:
        raise InvalidInput([FieldError(f"{where}.webhook", why)])
    return {"kind": "webhook", "url": url, "secret": _secret(body, where)}


def _public(target: JSON) -> JSON:
    out = {k: v for k, v in target.items() if k != "secret"}
    if target.get("kind") == "webhook":
        out["signed"] = bool(target.get("secret"))
    return out


class EventOps:
    """The operations' bodies, on one head's :class:`EventBus`."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def put_rule(self, body: JSON) -> JSON:
        name = _name(body)
        pattern = body.get("pattern") or {}
        patterns.validate(pattern)
        raw = body.get("targets")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TARGETS:
            raise InvalidInput([FieldError("targets", f"1 to {MAX_TARGETS} targets")])
        targets: list[JSON] = []
        for i, t in enumerate(raw):
            where = f"targets[{i}]"
            if not isinstance(t, dict) or ("webhook" in t) == ("topic" in t):
                raise InvalidInput([FieldError(where, "must have a webhook or a topic")])
            if "topic" in t:
                topic = _name(t, "topic")
                if topic not in self.bus.topics:
                    raise NotFound(f"no event topic {topic!r}")
                targets.append({"kind": "topic", "topic": topic})
            else:
                targets.append(_webhook(t, where))
        description = body.get("description", "")
        doc = {"name": name, "pattern": pattern, "targets": targets,
               "description": str(description)[:500], "createdAt": self.bus.clock()}  # fmt: skip
        self.bus.save("rule", name, doc)
        return self._rule(doc)

    @staticmethod
    def _rule(doc: JSON) -> JSON:
        return {**doc, "targets": [_public(t) for t in doc.get("targets", [])]}

    def list_rules(self) -> JSON:
        return {"rules": [self._rule(d) for d in self.bus.rules.values()]}

    def delete_rule(self, body: JSON) -> JSON:
        name = _name(body)
        if not self.bus.delete("rule", name):
            raise NotFound(f"no event rule {name!r}")
        return {}

    def create_topic(self, body: JSON) -> JSON:
        name = _name(body)
        if name in self.bus.topics:
            raise Conflict(f"event topic {name!r} exists already")
        doc: JSON = {"name": name, "subscriptions": [], "createdAt": self.bus.clock()}
        self.bus.save("topic", name, doc)
        return self._topic(doc)

    @staticmethod
    def _topic(doc: JSON) -> JSON:
        return {**doc, "subscriptions": [_public(s) for s in doc.get("subscriptions", [])]}

    def list_topics(self) -> JSON:
        return {"topics": [self._topic(d) for d in self.bus.topics.values()]}

    def delete_topic(self, body: JSON) -> JSON:
        name = _name(body)
        users = [r for r, d in self.bus.rules.items()
                 if any(t.get("topic") == name for t in d.get("targets", []))]  # fmt: skip
        if users:
            raise Conflict(f"event topic {name!r} is the target of rules {', '.join(users)}")
        if not self.bus.delete("topic", name):
            raise NotFound(f"no event topic {name!r}")
        return {}

    def subscribe(self, body: JSON) -> JSON:
        name = _name(body, "topic")
        topic = self.bus.topics.get(name)
        if topic is None:
            raise NotFound(f"no event topic {name!r}")
        if ("webhook" in body) == ("command" in body):
            raise InvalidInput([FieldError("", "give a webhook or a command")])
        if "command" in body:
            command = body["command"]
            if not isinstance(command, str) or not command.strip():
                raise InvalidInput([FieldError("command", "must be a command line")])
            sub: JSON = {"kind": "command", "command": command}
        else:
            sub = _webhook(body, "subscription")
        sub["id"] = "sub-" + secrets.token_hex(4)
        doc = {**topic, "subscriptions": [*topic.get("subscriptions", []), sub]}
        self.bus.save("topic", name, doc)
        return {"subscriptionId": sub["id"]}

    def unsubscribe(self, body: JSON) -> JSON:
        name = _name(body, "topic")
        topic = self.bus.topics.get(name)
        sub_id = body.get("subscriptionId")
        subs = topic.get("subscriptions", []) if topic else []
        kept = [s for s in subs if s.get("id") != sub_id]
        if topic is None or len(kept) == len(subs):
            raise NotFound(f"no subscription {sub_id!r} of event topic {name!r}")
        self.bus.save("topic", name, {**topic, "subscriptions": kept})
        return {}

    def dead_letters(self, body: JSON) -> JSON:
        limit = body.get("maxResults", 100) if isinstance(body, dict) else 100
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise InvalidInput([FieldError("maxResults", "a number from 1 to 1000")])
        return {"deadLetters": [d.public() for d in self.bus.store.events.dead_letters(limit)]}

    def purge_dead_letters(self) -> JSON:
        with self.bus.store.transaction():
            n = self.bus.store.events.purge_dead()
        return {"purged": n}


def _body(body: JSON) -> JSON:
    if not isinstance(body, dict):
        raise InvalidInput("the request must be a JSON object")
    return body


def event_operations(service: Service, bus: EventBus) -> dict[str, Handler]:
    """The event operations by native name, for the head's table (``Head.ops``)."""
    ops = EventOps(bus)
    table: dict[str, Callable[[JSON], JSON]] = {
        "putEventRule": ops.put_rule,
        "listEventRules": lambda b: ops.list_rules(),
        "deleteEventRule": ops.delete_rule,
        "createEventTopic": ops.create_topic,
        "listEventTopics": lambda b: ops.list_topics(),
        "deleteEventTopic": ops.delete_topic,
        "subscribeEventTopic": ops.subscribe,
        "unsubscribeEventTopic": ops.unsubscribe,
        "listDeadLetters": ops.dead_letters,
        "purgeDeadLetters": lambda b: ops.purge_dead_letters(),
    }

    def run(fn: Callable[[JSON], JSON], sv: Service, body: JSON, caller: Caller) -> JSON:
        return fn(body)

    return {
        name: partial(Operation(None, name, _body, partial(run, fn), admin=True), service)
        for name, fn in table.items()
    }
