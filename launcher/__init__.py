"""The node side of mnp: the agent that runs job attempts on one node.

Imports only the standard library, ``asyncssh`` (to serve SSH), ``docker`` (for containers)
and the plain-data and pure parts of ``mnp`` (``mnp.spec``, ``mnp.build``), so a node needs
none of the head node's dependencies. Run it with ``python -m launcher.agent --help``.
"""
