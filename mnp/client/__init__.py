"""Client side: the native API client, the Python job DSL, job-spec files, and
following what a submission became (attaching from a terminal: :mod:`mnp.cli.attach`)."""

from mnp.client.client import TERMINAL_STATUSES as TERMINAL_STATUSES
from mnp.client.client import Client as Client
