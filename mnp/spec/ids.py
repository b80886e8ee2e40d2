"""Identifiers of new jobs and requests: UUIDs in RFC 9562's version 7 layout.

The first 48 bits are the time in milliseconds, the version nibble says 7, the rest (74
bits) come from ``os.urandom``. A job's id is the key of the store's ``jobs`` and
``job_specs`` trees: ids that grow with time land beside each other, so the jobs one commit
writes share the trees' last pages, where random (version 4) ids put each job on a page of
its own in both trees (measured in ``benchmarks/README.md``). They are as hard to guess as
any 74 random bits, and any UUID parser takes them (AWS's job ids are UUIDs too).
"""

from __future__ import annotations

import os
import time

_RANDOM_A = 0xFFF
_RANDOM_B = (1 << 62) - 1


def new_id() -> str:
    """A new time-ordered UUID, as text (``0190f2a4-6c1e-7d3a-9b4f-…``)."""
    r = int.from_bytes(os.urandom(10), "big")
    value = (
        (time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (r >> 64 & _RANDOM_A) << 64
        | 0b10 << 62
        | r & _RANDOM_B
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
