"""The head's side of its nodes: agent sessions and the output they send (log intake)."""
