"""``mnp events``: follow job state-change events, and route them (admins).

- ``mnp events tail [--job ID] [--queue Q] [--since-buffer] [--no-follow]``: one event per
  line as JSON (``--brief``: time, job, status, reason); users see their own jobs' events;
- ``mnp events rules create NAME (--webhook URL [--secret S] | --topic T)... [--queue Q]
  [--status S] [--reason-prefix P] | --pattern JSON``, ``rules list``, ``rules delete NAME``;
- ``mnp events topics create NAME``, ``topics subscribe NAME (--webhook URL [--secret S] |
  --command CMD)``, ``topics unsubscribe NAME ID``, ``topics list``, ``topics delete NAME``;
- ``mnp events dead-letters [--purge]``.

See docs/events.md for the event's shape, the patterns and the signature.
"""

from __future__ import annotations

import json
from typing import Any

import click

from mnp.cli.state import State, json_option, pass_state, print_json, read_json


@click.group("events")
def events_group() -> None:
    """Job state-change events: follow them, route them to webhooks and topics."""


@events_group.command("tail")
@click.option("--job", "job_id", help="Only this job's events.")
@click.option("--queue", help="Only this queue's events.")
@click.option("--since-buffer", is_flag=True,
              help="Start with the recent events the head still holds.")  # fmt: skip
@click.option("--no-follow", is_flag=True, help="Print what is buffered and stop.")
@click.option("--brief", is_flag=True, help="One short line per event instead of its JSON.")
@pass_state
def events_tail(
    state: State, job_id: str | None, queue: str | None, since_buffer: bool, no_follow: bool,
    brief: bool,
) -> None:  # fmt: skip
    """Follow the events (Ctrl-C to stop)."""
    params: dict[str, str] = {}
    if not no_follow:
        params["follow"] = "1"
    if since_buffer or no_follow:
        params["after"] = "0"
    if job_id:
        params["job"] = job_id
    if queue:
        params["queue"] = queue
    try:
        for line in state.client().stream_lines("events", "/api/v1/events", params, not no_follow):
            line = line.strip()
            if not line:
                continue
            event = json.loads(line)["event"]
            click.echo(_brief(event) if brief else json.dumps(event, separators=(",", ":")))
    except KeyboardInterrupt:
        pass


def _brief(event: dict[str, Any]) -> str:
    d = event.get("detail", {})
    reason = d.get("statusReason") or ""
    return f"{event.get('time')}\t{d.get('jobId')}\t{d.get('jobName')}\t{d.get('status')}\t{reason}"


def _targets(webhooks: tuple[str, ...], secret: str | None, topics: tuple[str, ...]) -> list[Any]:
    out: list[dict[str, str]] = []
    for url in webhooks:
        out.append({"webhook": url, **({"secret": secret} if secret else {})})
    out += [{"topic": t} for t in topics]
    return out


@events_group.group("rules")
def rules_group() -> None:
    """Rules: which events go where (admins)."""


@rules_group.command("create")
@click.argument("name")
@click.option("--webhook", "webhooks", multiple=True, help="POST matching events here.")
@click.option("--secret", help="The webhooks' HMAC secret (X-Mnp-Signature).")
@click.option("--topic", "topics", multiple=True, help="Publish matching events to this topic.")
@click.option("--queue", "queues", multiple=True, help="Only jobs of this queue (repeat).")
@click.option("--status", "statuses", multiple=True, help="Only these statuses (repeat).")
@click.option("--reason-prefix", "reasons", multiple=True,
              help="Only status reasons starting so (repeat).")  # fmt: skip
@click.option("--pattern", help="An EventBridge event pattern: inline JSON, a file, or - (stdin).")
@click.option("--description", default="")
@json_option
@pass_state
def rules_create(
    state: State, name: str, webhooks: tuple[str, ...], secret: str | None,
    topics: tuple[str, ...], queues: tuple[str, ...], statuses: tuple[str, ...],
    reasons: tuple[str, ...], pattern: str | None, description: str, as_json: bool,
) -> None:  # fmt: skip
    """Create (or replace) rule NAME."""
    if pattern is not None and (queues or statuses or reasons):
        raise click.UsageError("give --pattern or --queue/--status/--reason-prefix, not both")
    if pattern is not None:
        try:
            doc = json.loads(pattern) if pattern.lstrip().startswith("{") else read_json(pattern)
        except ValueError as e:
            raise click.BadParameter(f"not JSON: {e}", param_hint="--pattern") from e
    else:
        doc = {"source": ["aws.batch"], "detail-type": ["Batch Job State Change"]}
        detail: dict[str, Any] = {}
        if queues:
            detail["jobQueue"] = [{"suffix": f":job-queue/{q}"} for q in queues]
        if statuses:
            detail["status"] = [s.upper() for s in statuses]
        if reasons:
            detail["statusReason"] = [{"prefix": p} for p in reasons]
        if detail:
            doc["detail"] = detail
    body = {"name": name, "pattern": doc, "targets": _targets(webhooks, secret, topics),
            "description": description}  # fmt: skip
    made = state.client().call("putEventRule", body)
    if as_json:
        print_json(made)
    else:
        click.echo(f"rule {name}: {json.dumps(made.get('pattern'))}")


@rules_group.command("list")
@json_option
@pass_state
def rules_list(state: State, as_json: bool) -> None:
    """Every rule, its pattern and targets."""
    rules = state.client().call("listEventRules", {}).get("rules", [])
    if as_json:
        print_json(rules)
        return
    for r in rules:
        targets = ", ".join(t.get("url") or f"topic {t.get('topic')}" for t in r["targets"])
        click.echo(f"{r['name']}\t{json.dumps(r.get('pattern'))}\t{targets}")


@rules_group.command("delete")
@click.argument("name")
@pass_state
def rules_delete(state: State, name: str) -> None:
    """Delete rule NAME (its deliveries under way still go out)."""
    state.client().call("deleteEventRule", {"name": name})
    click.echo(f"deleted rule {name}")


@events_group.group("topics")
def topics_group() -> None:
    """Topics: named lists of subscribers a rule publishes to (admins)."""


@topics_group.command("create")
@click.argument("name")
@pass_state
def topics_create(state: State, name: str) -> None:
    """Create topic NAME (with no subscribers)."""
    state.client().call("createEventTopic", {"name": name})
    click.echo(f"created topic {name}")


@topics_group.command("subscribe")
@click.argument("name")
@click.option("--webhook", help="POST each event here.")
@click.option("--secret", help="The webhook's HMAC secret.")
@click.option("--command", help="Run this (sh -c, on the head) with the event on stdin.")
@pass_state
def topics_subscribe(
    state: State, name: str, webhook: str | None, secret: str | None, command: str | None
) -> None:
    """Subscribe a webhook or a command to topic NAME."""
    if (webhook is None) == (command is None):
        raise click.UsageError("give --webhook or --command")
    body: dict[str, str] = {"topic": name}
    if webhook is not None:
        body["webhook"] = webhook
        if secret:
            body["secret"] = secret
    else:
        body["command"] = command or ""
    made = state.client().call("subscribeEventTopic", body)
    click.echo(made["subscriptionId"])


@topics_group.command("unsubscribe")
@click.argument("name")
@click.argument("subscription_id")
@pass_state
def topics_unsubscribe(state: State, name: str, subscription_id: str) -> None:
    """Remove subscription SUBSCRIPTION_ID from topic NAME."""
    state.client().call("unsubscribeEventTopic", {"topic": name, "subscriptionId": subscription_id})
    click.echo(f"unsubscribed {subscription_id}")


@topics_group.command("list")
@json_option
@pass_state
def topics_list(state: State, as_json: bool) -> None:
    """Every topic and its subscribers."""
    topics = state.client().call("listEventTopics", {}).get("topics", [])
    if as_json:
        print_json(topics)
        return
    for t in topics:
        click.echo(t["name"])
        for s in t.get("subscriptions", []):
            click.echo(f"  {s['id']}\t{s['kind']}\t{s.get('url') or s.get('command')}")


@topics_group.command("delete")
@click.argument("name")
@pass_state
def topics_delete(state: State, name: str) -> None:
    """Delete topic NAME (no rule may still publish to it)."""
    state.client().call("deleteEventTopic", {"name": name})
    click.echo(f"deleted topic {name}")


@events_group.command("dead-letters")
@click.option("--purge", is_flag=True, help="Delete them all.")
@click.option("--max", "limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@json_option
@pass_state
def dead_letters(state: State, purge: bool, limit: int, as_json: bool) -> None:
    """Deliveries given up after their last try (newest first)."""
    if purge:
        n = state.client().call("purgeDeadLetters", {}).get("purged", 0)
        click.echo(f"purged {n} dead letters")
        return
    items = state.client().call("listDeadLetters", {"maxResults": limit}).get("deadLetters", [])
    if as_json:
        print_json(items)
        return
    for d in items:
        detail = d["event"].get("detail", {})
        click.echo(f"{d['id']}\t{d['source']}\t{detail.get('jobId')}\t{detail.get('status')}\t"
                   f"{d['attempts']} tries\t{d.get('lastError')}")  # fmt: skip
