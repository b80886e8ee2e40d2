"""A head on loopback nodes (so jobs reach it on 127.0.0.1) and the Slurm commands installed
in a folder of their own, for the tests that drive mnp the way Slurm tools do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mnp.cli.commands import install_commands
from tests.integration.cluster import Cluster


def slurm_cluster(tmp_path_factory: pytest.TempPathFactory, tag: str) -> Iterator[Cluster]:
    """Two 2-vCPU loopback nodes; for a module-scoped fixture."""
    home = tmp_path_factory.mktemp(tag) / "home"
    with Cluster(home, nodes=2, vcpus=2, network="loopback") as cluster:
        yield cluster


def commands_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``mnp slurm install-commands``' sbatch, squeue, … of this tree."""
    d = tmp_path_factory.mktemp("bin")
    install_commands(d)
    return d
