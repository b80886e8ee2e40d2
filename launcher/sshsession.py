"""One SSH session of the node's server: its shell (:class:`Child`) and the pumps that copy
bytes and signals between the shell's pipes and the client's channel (:func:`serve`).

Split from :mod:`launcher.sshd`, which decides who may connect and when sessions end; this
module only moves data. Everything runs on the server's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import asyncssh

from launcher.attempt import exit_code_of
from launcher.pgroups import signal_group

CHUNK = 64 * 1024


@dataclass(eq=False)
class Session:
    """One exec request's shell, from its start until its pipes are closed."""

    scope: str
    command: str
    pgid: int
    killed: bool = False
    """Set when the server itself killed it (revoke, close, disconnect)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def serve(
    process: asyncssh.SSHServerProcess[bytes],
    child: Child,
    session: Session,
    terminate: Callable[[int], None],
    exited: Callable[[Session, int], None],
) -> None:
    """Pipe ``process``'s channel to and from ``child`` until the session is over.

    ``terminate(pgid)`` stops the session's process group (when the client goes away);
    ``exited(session, code)`` reports a shell that exited on its own (not one the server
    killed, ``session.killed``). The exit status goes back to the client once the shell's
    output pipes reach EOF, unless the client left first.
    """
    popen = child.popen
    assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    transports: list[asyncio.BaseTransport] = []
    try:
        stdin = await _write_stream(loop, popen.stdin, transports)
        stdout = await _read_stream(loop, popen.stdout, transports)
        stderr = await _read_stream(loop, popen.stderr, transports)
        tasks.append(loop.create_task(_pump_stdin(process.stdin, stdin, session.pgid)))
        output = [
            loop.create_task(_pump_out(stdout, process.stdout)),
            loop.create_task(_pump_out(stderr, process.stderr)),
        ]
        closed = loop.create_task(process.channel.wait_closed())
        tasks += [*output, closed]
        first: set[asyncio.Future[Any]] = {child.exited, closed}
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
        if not child.exited.done():  # the client went away
            session.killed = True
            terminate(session.pgid)
        code = await child.exited
        if not session.killed:
            exited(session, code)
        # Like OpenSSH: report the status once the output pipes reach EOF (a background
        # child still holding stdout keeps the session open), unless the client left.
        drained = loop.create_task(_all_done(output))
        tasks.append(drained)
        await asyncio.wait({closed, drained}, return_when=asyncio.FIRST_COMPLETED)
        if closed.done():  # the client went away: so does what the shell left running
            terminate(session.pgid)
        else:
            with contextlib.suppress(OSError, asyncssh.Error):
                process.exit(code)
    finally:
        for task in tasks:
            task.cancel()
        # Close through the transports (they own the fds, registered with the loop).
        for transport in transports:
            transport.close()
        adopted = {id(t.get_extra_info("pipe")) for t in transports}
        for pipe in (popen.stdin, popen.stdout, popen.stderr):
            if id(pipe) not in adopted:
                pipe.close()


class Child:
    """A session's shell; ``exited`` resolves with its exit code (128+N for signal N) as
    soon as it exits, whatever its children do with the pipes.

    Exit is noticed through a pidfd on the loop (no child watcher, no thread per child),
    as in :mod:`launcher.process`; the reader stays registered until the child is reaped,
    also when the session is abandoned.
    """

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.exited: asyncio.Future[int] = loop.create_future()
        self._loop = loop
        # A pidfd of an exited-but-unreaped child is readable at once, so no exit is missed.
        self._pidfd = os.pidfd_open(popen.pid)
        loop.add_reader(self._pidfd, self._on_exit)

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        code = exit_code_of(self.popen.wait())
        if not self.exited.done():
            self.exited.set_result(code)


async def _pump_stdin(
    source: asyncssh.SSHReader[bytes], target: asyncio.StreamWriter, pgid: int
) -> None:
    try:
        while True:
            try:
                data = await source.read(CHUNK)
            except asyncssh.SignalReceived as exc:
                sig = getattr(signal, f"SIG{exc.signal}", None)
                if isinstance(sig, signal.Signals):
                    signal_group(pgid, sig)
                continue
            except asyncssh.BreakReceived:
                signal_group(pgid, signal.SIGINT)
                continue
            except asyncssh.TerminalSizeChanged:
                continue
            if not data:
                break
            target.write(data)
            await target.drain()
    except (OSError, asyncssh.Error):
        pass  # the command stopped reading, or the channel went away
    finally:
        target.close()


async def _pump_out(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await source.read(CHUNK):
            target.write(data)
            await target.drain()


async def _read_stream(
    loop: asyncio.AbstractEventLoop, pipe: IO[bytes], transports: list[asyncio.BaseTransport]
) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=2 * CHUNK, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
    )
    transports.append(transport)
    return reader


async def _write_stream(
    loop: asyncio.AbstractEventLoop, pipe: IO[bytes], transports: list[asyncio.BaseTransport]
) -> asyncio.StreamWriter:
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, pipe)
    transports.append(transport)
    return asyncio.StreamWriter(transport, protocol, None, loop)


async def _all_done(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        await asyncio.shield(task)
