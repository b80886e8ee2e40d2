"""Job state-change events in EventBridge's "Batch Job State Change" shape, the rules and
topics that route them, and their delivery to webhooks and commands (docs/events.md).

:mod:`.patterns` matches events against EventBridge-style patterns, :mod:`.delivery` sends
one event to one destination (signed webhook POST, or a command with the event on stdin) on
a backoff schedule, :mod:`.bus` turns status changes into events and keeps the outbox, and
:mod:`.ops` is the native API's operations for them.
"""
