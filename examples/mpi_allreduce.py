"""Check an MPI job end to end: every rank adds ``rank + 1`` with one Allreduce.

Run it under MPI, e.g. inside an MNP job: ``python -m launcher.wire -- python
examples/mpi_allreduce.py``. Each rank prints ``rank=R size=S node=<address> ok=<bool>``;
rank 0 then prints ``allreduce ok on N nodes`` (N = distinct node addresses). Exits 1 when
any rank's sum is wrong. Needs mpi4py and numpy.
"""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
from mpi4py import MPI


def node_address() -> str:
    """The address of the node this rank runs on: the local end of the SSH session that
    started it (a launcher may forward its own environment, ``MNP_NODE_ADDRESS`` included, to
    every rank, but a node's SSH server sets this one itself), else ``MNP_NODE_ADDRESS``, else
    the host's address."""
    ssh = os.environ.get("SSH_CONNECTION", "").split()
    if len(ssh) == 4:
        return ssh[2]
    if os.environ.get("MNP_NODE_ADDRESS"):
        return os.environ["MNP_NODE_ADDRESS"]
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()


def say(line: str) -> None:
    # One write per line: print() writes the text and the newline separately, and lines of
    # different ranks then interleave in the launcher's output.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mine = np.full(4, rank + 1, dtype=np.int64)
    total = np.empty_like(mine)
    comm.Allreduce(mine, total, op=MPI.SUM)
    ok = bool(np.all(total == size * (size + 1) // 2))
    address = node_address()
    say(f"rank={rank} size={size} node={address} ok={ok}")
    addresses = comm.gather(address, root=0)
    all_ok = comm.allreduce(ok, op=MPI.LAND)
    if rank == 0 and addresses is not None:
        verdict = "ok" if all_ok else "FAILED"
        say(f"allreduce {verdict} on {len(set(addresses))} nodes")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
