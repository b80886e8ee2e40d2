"""The head node's behaviour, one method per operation, behind both front doors."""
