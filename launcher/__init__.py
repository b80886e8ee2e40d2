"""The node side of mnp: the agent that runs job attempts on one node.

Imports only the standard library and the plain-data modules of ``mnp``
(``protocol``, ``states``, ``errors``, ``config``), so a node needs none of the head node's
dependencies. Run it with ``python -m launcher.agent --help``.
"""
