"""The head's log line for a job placed with a default MEMORY: INFO the first time each
default is used, DEBUG for the jobs after it; every job's history and statusReason state it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mnp.scheduler import reasons
from tests.unit.helpers_core import Head
from tests.unit.test_reservations import one_node_of_jobs_without_memory

LOGGER = "mnp.scheduler.loop"


def test_a_default_memory_is_logged_at_info_once_then_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Head.open(tmp_path / "home")
    try:
        one_node_of_jobs_without_memory(h, tag="1000")
        jobs = [h.submit(f"j{i}") for i in range(3)]
        with caplog.at_level(logging.DEBUG, logger=LOGGER):
            h.ticks()
        lines = [
            r for r in caplog.records if r.name == LOGGER and reasons.DEFAULT_MEMORY in r.message
        ]
        assert [r.levelno for r in lines] == [logging.INFO, logging.DEBUG, logging.DEBUG]
        assert {r.message.split(":")[0] for r in lines} == set(jobs)  # each job still named
        for job in jobs:
            starting = [e for e in h.describe(job)["history"] if e["status"] == "STARTING"]
            assert starting and starting[-1]["reason"].startswith(reasons.DEFAULT_MEMORY)
            assert "MEMORY 1000 MiB" in h.describe(job)["statusReason"]
    finally:
        h.close()
