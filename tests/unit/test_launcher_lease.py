"""What the agent writes to its fence (launcher.lease): fencing at once, unfencing with the
next write, in order."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import cast

from launcher.lease import UNFENCE_SECONDS, Lease


class FakeFence:
    """Stands for the fence process: its stdin is a pipe the test reads (one read a write)."""

    def __init__(self) -> None:
        read, write = os.pipe()
        os.set_blocking(read, False)
        self.read_fd = read
        self.stdin = os.fdopen(write, "wb")
        self.pid = 0

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def writes(self) -> list[str]:
        try:
            return [os.read(self.read_fd, 65536).decode()]
        except BlockingIOError:
            return []


def fenced_lease() -> tuple[Lease, FakeFence]:
    lease = Lease()
    fence = FakeFence()
    lease._proc = cast(subprocess.Popen[bytes], fence)
    return lease, fence


async def turn() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_fencing_is_written_on_the_next_turn_and_unfencing_waits_for_it() -> None:
    async def main() -> None:
        lease, fence = fenced_lease()
        lease.group(41, True)
        lease.renew(time.monotonic(), 30)
        await turn()
        assert fence.writes() == [f"+group 41\nlease {lease.deadline:.6f}\n"]  # one write
        lease.group(41, False)
        await turn()
        assert fence.writes() == []  # waits for the next write
        lease.group(42, True)
        await turn()
        assert fence.writes() == ["-group 41\n+group 42\n"]  # in order, together
        lease.group(42, False)
        deadline = time.monotonic() + UNFENCE_SECONDS + 2
        while not (got := fence.writes()):  # nothing else comes: written after a while
            assert time.monotonic() < deadline, "the unfencing was never written"
            await asyncio.sleep(0.02)
        assert got == ["-group 42\n"]
        lease.group(43, False)
        lease.close()  # written before the fence is told to end
        assert os.read(fence.read_fd, 100) == b"-group 43\n"

    asyncio.run(main())
