"""The head node's behaviour behind both front doors: one table of operations (``operations``),
one part per kind of resource (``core.Service`` composes them), typed requests, answer shapes."""
