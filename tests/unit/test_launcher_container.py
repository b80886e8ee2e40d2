"""ContainerAttempt without an engine: the attempt still reports, with a start failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from launcher.container import ContainerAttempt
from launcher.engine import Engine
from mnp.spec.containers import ContainerRun
from mnp.spec.protocol import Assignment, Event


def test_unreachable_engine_is_a_start_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    events: list[Event] = []

    async def run() -> int | None:
        engine = Engine("n1", tmp_path / "root", "127.0.0.2")
        a = Assignment("j/1", "j", 1, ["true"], {}, None, 1.0, container=ContainerRun("img"))
        attempt = ContainerAttempt(a, tmp_path / "root", events.append, engine=engine)
        attempt.start()
        try:
            return await asyncio.wait_for(attempt.wait(), 30)
        finally:
            engine.close()

    assert asyncio.run(run()) is None
    assert [e.kind for e in events] == ["start_failed"]
    reason = events[0].reason or ""
    assert reason.startswith("CannotStartContainerError: cannot reach the Docker engine"), reason
