#!/usr/bin/env bash
# The whole test suite: fast unit tests, then the integration tier (real head node and node
# agents on loopback). Installs the project first so a fresh clone works.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[dev]'
python3 -m pytest -q -p no:cacheprovider tests/unit
python3 -m pytest -q -p no:cacheprovider -m integration tests/integration
