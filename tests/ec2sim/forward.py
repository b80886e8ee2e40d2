"""A TCP forwarder from inside a network namespace to loopback in the machine's own.

A simulated instance reaches its head node at ``http://127.0.0.1:<port>`` as a real one
reaches it at its address: a listener made inside the instance's namespace
(:func:`launcher.netns.socket_in`) on ``127.0.0.1:<port>``, and for every connection it
accepts one connection from this process (which stays in the machine's namespace) to
``127.0.0.1:<port>`` there, bytes piped both ways, each direction's end passed on as a
half-close (so a client that shuts down its sending side still reads the whole answer).

One thread accepts, two threads pipe each connection; :meth:`Forwarder.stop` closes the
listener and every connection and joins them all.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from launcher.netns import socket_in

_ACCEPT_POLL = 0.1
_CONNECT_TIMEOUT = 5.0


class _Pair:
    """One forwarded connection: closed once both directions ended."""

    def __init__(self, inner: socket.socket, outer: socket.socket) -> None:
        self.sockets = (inner, outer)
        self._ended = 0
        self._lock = threading.Lock()

    def ended(self) -> bool:
        """One direction ended; True when it was the second."""
        with self._lock:
            self._ended += 1
            return self._ended == 2

    def close(self) -> None:
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class Forwarder:
    """``127.0.0.1:<port>`` inside ``namespace`` → ``target_host:target_port`` (default: the
    same port) in the machine's namespace, from :meth:`start` until :meth:`stop`. A
    connection the target refuses is closed at once (the client sees its connection reset
    or closed, as with nothing listening)."""

    def __init__(
        self,
        namespace: str,
        port: int,
        target_host: str = "127.0.0.1",
        target_port: int | None = None,
    ) -> None:
        self.namespace = namespace
        self.port = port
        self.target = (target_host, target_port if target_port is not None else port)
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pairs: set[_Pair] = set()
        self._lock = threading.Lock()

    def start(self) -> Forwarder:
        self._listener = socket_in(self.namespace, "127.0.0.1", self.port)
        self._listener.settimeout(_ACCEPT_POLL)
        self._spawn(self._accept_loop, self._listener)
        return self

    def stop(self) -> None:
        """Close the listener and every open connection; joins every thread."""
        self._stopping.set()
        with self._lock:
            threads, pairs = list(self._threads), list(self._pairs)
        for pair in pairs:
            pair.close()
        for t in threads:
            t.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                inner, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            inner.settimeout(None)
            try:
                outer = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
            except OSError:
                inner.close()
                continue
            outer.settimeout(None)
            pair = _Pair(inner, outer)
            with self._lock:
                if self._stopping.is_set():
                    pair.close()
                    return
                self._pairs.add(pair)
            self._spawn(self._pipe, pair, inner, outer)
            self._spawn(self._pipe, pair, outer, inner)

    def _pipe(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:  # reset or closed: the other direction cannot go on either
            pair.close()
        if pair.ended():
            with self._lock:
                self._pairs.discard(pair)
            pair.close()
