"""Plain data shared by the head node and its nodes: definitions, jobs, states and their
transitions, node ranges, and the messages between head and node. Standard library only."""
