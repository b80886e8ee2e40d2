"""``python tcp_pipe.py HOST PORT``: stdin → a TCP connection → stdout, until either side
ends — an OpenSSH ``ProxyCommand`` (as ``nc HOST PORT`` would be), run with ``ip netns exec``
inside a test network's hub so the machine's own namespace needs no address there."""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main(host: str, port: int) -> int:
    conn = socket.create_connection((host, port), timeout=10)
    conn.settimeout(None)
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ)
    sel.register(conn, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj == 0:
                data = os.read(0, 65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
                    continue
                conn.sendall(data)
            else:
                data = conn.recv(65536)
                if not data:
                    return 0
                os.write(1, data)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], int(sys.argv[2])))
