"""The head's scheduling: the pure reconcile, the head's in-memory state, the tick loop,
attempts and multi-node gangs."""
