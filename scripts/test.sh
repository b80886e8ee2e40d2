#!/usr/bin/env bash
# The whole test suite: fast unit tests, then the integration tier (real head node, node
# agents, SSH, MPICH and Open MPI on loopback). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export MNP_NO_SKIP=1  # a missing dependency fails the run instead of skipping tests
python3 -m pytest -q -p no:cacheprovider tests/unit
python3 -m pytest -q -p no:cacheprovider -m integration tests/integration
