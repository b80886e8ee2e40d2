from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running head node with 3 local nodes (2 vCPUs, 2 GiB each); stopped afterwards."""
    c = Cluster(tmp_path / "home")
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for a whole module of tests that do not break it."""
    c = Cluster(tmp_path_factory.mktemp("shared") / "home")
    try:
        yield c.start()
    finally:
        c.stop()
