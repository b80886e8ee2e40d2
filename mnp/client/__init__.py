"""Client side: the native API client, the Python job DSL, job-spec files, attaching to jobs."""

from mnp.client.client import TERMINAL_STATUSES as TERMINAL_STATUSES
from mnp.client.client import Client as Client
