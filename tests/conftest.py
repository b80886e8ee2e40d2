from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_support import DockerEngine
from tests.integration.cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running head node with 3 local nodes (2 vCPUs, 2 GiB each); stopped afterwards."""
    with Cluster(tmp_path / "home") as c:
        yield c


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for a whole module of tests that do not break it."""
    with Cluster(tmp_path_factory.mktemp("shared") / "home") as c:
        yield c


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """With MNP_NO_SKIP=1 (CI), a skipped test is an error: every tier must really run."""
    import os

    skipped = call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception)
    if skipped and os.environ.get("MNP_NO_SKIP") == "1":
        raise RuntimeError(f"{item.nodeid} was skipped ({call.excinfo}); CI runs every test")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A Docker engine (the running one, or ``dockerd`` started for the session and stopped
    by PID after) with the test images built; ``DOCKER_HOST`` points at it for every head
    node and agent the tests start. At the end no container with mnp's labels may remain."""
    import os

    pytest.importorskip("docker")
    engine = DockerEngine()
    saved = os.environ.get("DOCKER_HOST")
    try:
        engine.start()
        os.environ["DOCKER_HOST"] = engine.host
        engine.build_images()
        yield engine
        left = engine.mnp_containers()
        for c in left:
            engine.api().remove_container(c["Id"], force=True)
        assert not left, f"containers left behind: {[c['Names'] for c in left]}"
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        engine.stop()
