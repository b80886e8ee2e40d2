"""A provider's stop that blocks (the local provider waits out a grace period) runs off the
head's event loop: the loop keeps answering polls meanwhile, and the provider is given node
ids, never the scheduler's records."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mnp.providers import Instance, LaunchOutcome, LaunchRequest
from mnp.scheduler.fleet import in_thread
from mnp.spec.environments import NodeStatus
from mnp.spec.protocol import Register
from tests.unit.helpers_core import Head

BLOCK_SECONDS = 3.0
BOUND_SECONDS = 0.5


class BlockingProvider:
    """A provider whose stop blocks until released (as a long grace period would)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stopped: list[str] = []
        self.done = threading.Event()
        self.thread: str | None = None

    def launch(self, requests: Sequence[LaunchRequest]) -> list[LaunchOutcome]:
        return [LaunchOutcome(r.request_id) for r in requests]

    def list(self) -> list[Instance]:
        return []

    def terminate(self, ids: Sequence[str], grace_seconds: float) -> None:
        self.thread = threading.current_thread().name
        self.release.wait(BLOCK_SECONDS)
        self.stopped.extend(ids)
        self.done.set()


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    h = Head.open(tmp_path / "home")
    yield h
    h.close()


def _managed_with_two_nodes(head: Head, fake: BlockingProvider) -> list[str]:
    head.scheduler.fleet._providers["local"] = fake  # fault injection: the blocking provider
    head.api["createComputeEnvironment"](
        {
            "computeEnvironmentName": "aws",
            "type": "MANAGED",
            "computeResources": {"type": "EC2", "maxvCpus": 8, "desiredvCpus": 8, "subnets": []},
        }
    )
    head.ticks(1)  # launches its two nodes through the fake
    ids = sorted(head.state.nodes)
    for n in ids:
        node = head.state.nodes[n]
        head.sessions.register(Register(n, "aws", node.address, 4, 4096, 0, 4242))
    assert [head.state.nodes[n].status for n in ids] == [NodeStatus.ACTIVE] * 2
    return ids


def test_a_blocking_provider_stop_does_not_delay_a_poll(head: Head) -> None:
    fake = BlockingProvider()
    ids = _managed_with_two_nodes(head, fake)
    executor = ThreadPoolExecutor(1, thread_name_prefix="test-provider")

    async def shrink_then_poll() -> float:
        head.scheduler.fleet.offload = in_thread(executor)
        t0 = time.monotonic()
        head.api["updateComputeEnvironment"](
            {"computeEnvironment": "aws", "computeResources": {"maxvCpus": 4}}
        )
        await asyncio.sleep(0)  # the loop turns while the stop blocks in its thread
        survivor = next(n for n in ids if head.state.nodes[n].status == NodeStatus.ACTIVE)
        head.poll(survivor)
        return time.monotonic() - t0

    try:
        elapsed = asyncio.run(shrink_then_poll())
        assert elapsed < BOUND_SECONDS, f"the poll waited {elapsed:.2f} s for a provider stop"
        assert not fake.done.is_set()  # still blocking: the poll really ran concurrently
        fake.release.set()
        assert fake.done.wait(10), "the provider's stop never ran"
    finally:
        fake.release.set()
        executor.shutdown(wait=True)
    assert fake.thread is not None and fake.thread.startswith("test-provider")
    (stopped,) = fake.stopped
    assert head.state.nodes[stopped].status == NodeStatus.STOPPED
