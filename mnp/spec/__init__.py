"""Plain data shared by the head node and its nodes: definitions, jobs, states and their
transitions, node ranges, and the messages between head and node. Standard library only."""

DEFAULT_QUEUE = "default"
"""The job queue a job goes to when it names none (the head creates it at first start)."""

NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
"""A name AWS Batch accepts for a job, definition, queue or environment (up to 128 letters,
digits, hyphens and underscores, starting with a letter or digit)."""

ENV_NAME_PATTERN = "[A-Za-z_][A-Za-z0-9_]*"
"""An environment variable name a shell can export."""
