"""Check a torch.distributed job in every-node mode: one process per node, gloo backend.

The node agent starts this on every node of an MNP job with ``MASTER_ADDR``,
``MASTER_PORT``, ``WORLD_SIZE`` and ``NODE_RANK`` (or ``RANK``) set. Each process adds
``rank + 1`` with one all_reduce, checks the sum, and prints
``rank=R world=W node=<address> sum=S ok=<bool>``. Exits 1 on a wrong sum.
Pin gloo to an interface with ``GLOO_SOCKET_IFNAME`` (e.g. ``lo`` for local nodes).
Needs torch (CPU is enough).
"""

from __future__ import annotations

import datetime
import os
import socket
import sys

import torch
import torch.distributed as dist


def node_address() -> str:
    """``MNP_NODE_ADDRESS`` from the node agent, else the host's address."""
    if os.environ.get("MNP_NODE_ADDRESS"):
        return os.environ["MNP_NODE_ADDRESS"]
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return socket.gethostname()


def main() -> int:
    rank = int(os.environ.get("NODE_RANK", os.environ.get("RANK", "0")))
    world = int(os.environ["WORLD_SIZE"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{addr}:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        t = torch.full((4,), float(rank + 1))
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        expected = world * (world + 1) / 2
        ok = bool(torch.all(t == expected))
        line = f"rank={rank} world={world} node={node_address()} sum={t[0].item():g} ok={ok}"
        sys.stdout.write(line + "\n")  # one write, so lines of different nodes never mix
        sys.stdout.flush()
        flags = torch.tensor([1 if ok else 0])
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        return 0 if flags.item() == 1 else 1
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
