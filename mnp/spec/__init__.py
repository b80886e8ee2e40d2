"""Plain data shared by the head node and its nodes: definitions, jobs, states and their
transitions, node ranges, and the messages between head and node. Standard library only."""

DEFAULT_QUEUE = "default"
"""The job queue a job goes to when it names none (the head creates it at first start)."""
