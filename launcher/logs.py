"""An attempt's output as ``log`` event pieces: decoded text, each with the byte offset it
starts at.

Both runtimes decode the same way (:class:`Utf8Pieces`); a process's output is read back
from its log files (:class:`LogTail`), a container's arrives on a thread
(:class:`OutputBuffer`).
"""

from __future__ import annotations

import codecs
import os
import threading
from typing import Literal

Stream = Literal["stdout", "stderr"]
STREAMS: tuple[Stream, Stream] = ("stdout", "stderr")

LOG_CHUNK_BYTES = 64 * 1024
"""Upper bound on the bytes one ``log`` event covers."""
TICK_MAX_CHUNKS = 16
"""Chunks read per stream per :meth:`launcher.process.AttemptProcess.read_logs` call while
running (1 MiB), so one chatty job cannot stall the loop; the rest is read on the next call
or at exit."""

Piece = tuple[int, str]
"""``(offset, text)``: ``text`` starts at byte ``offset`` of its stream."""


class Utf8Pieces:
    """One stream's bytes, fed in order, as decoded pieces with their byte offsets.

    Text is decoded with an incremental UTF-8 decoder (``errors="replace"``): bytes of a
    character split across feeds are held back and come out with the next piece, whose
    offset is then where that character starts. The pieces are contiguous: the next offset
    is ``offset + len(text.encode())`` unless invalid bytes were replaced.
    """

    def __init__(self) -> None:
        self.position = 0
        """Bytes fed so far (including held-back partial characters)."""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def held(self) -> int:
        """Bytes of a partial character waiting for the rest of it."""
        return len(self._decoder.getstate()[0])

    def feed(self, data: bytes) -> Piece | None:
        """The text ``data`` completes (None: nothing yet)."""
        offset = self.position - self.held
        text = self._decoder.decode(data)
        self.position += len(data)
        return (offset, text) if text else None

    def flush(self) -> Piece | None:
        """A trailing partial character, replaced (the stream has ended)."""
        offset = self.position - self.held
        text = self._decoder.decode(b"", final=True)
        return (offset, text) if text else None


class LogTail:
    """Reads what was appended to one log file since the previous call, as decoded text
    (:class:`Utf8Pieces`). Each piece covers at most :data:`LOG_CHUNK_BYTES` bytes."""

    def __init__(self, fd: int, stream: Stream) -> None:
        self.stream: Stream = stream
        self._fd = fd
        self._text = Utf8Pieces()

    @property
    def position(self) -> int:
        """Bytes of the file consumed so far (including held-back partial characters)."""
        return self._text.position

    def read(self, max_chunks: int | None = None, final: bool = False) -> list[Piece]:
        """New text since the last call; ``final`` also flushes a trailing partial character.

        Reads at most ``max_chunks`` chunks (None: until end of file). Uses ``pread``, so the
        writer's file offset is never disturbed.
        """
        pieces: list[Piece] = []
        chunks = 0
        while max_chunks is None or chunks < max_chunks:
            want = LOG_CHUNK_BYTES - self._text.held
            data = os.pread(self._fd, want, self._text.position)
            if not data:
                break
            chunks += 1
            piece = self._text.feed(data)
            if piece is not None:
                pieces.append(piece)
            if len(data) < want:
                break
        if final and (piece := self._text.flush()) is not None:
            pieces.append(piece)
        return pieces

    def close(self) -> None:
        """Close the file descriptor; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OutputBuffer:
    """A container's output: appended on the thread that follows it, drained on the loop.

    :meth:`append` and :meth:`drain` may run concurrently (one lock guards the bytes).
    """

    def __init__(self) -> None:
        self._buffers: dict[Stream, bytearray] = {s: bytearray() for s in STREAMS}
        self._lock = threading.Lock()
        self._texts: dict[Stream, Utf8Pieces] = {s: Utf8Pieces() for s in STREAMS}

    def append(self, out: bytes | None, err: bytes | None) -> None:
        """Add what arrived on stdout and stderr (None or empty: nothing)."""
        with self._lock:
            if out:
                self._buffers["stdout"] += out
            if err:
                self._buffers["stderr"] += err

    def drain(self, final: bool) -> list[tuple[Stream, int, str]]:
        """``(stream, offset, text)`` for what arrived since the last call, stdout first, in
        chunks of :data:`LOG_CHUNK_BYTES`; ``final`` also flushes partial characters."""
        with self._lock:
            taken = {s: bytes(b) for s, b in self._buffers.items()}
            for b in self._buffers.values():
                b.clear()
        pieces: list[tuple[Stream, int, str]] = []
        for stream, data in taken.items():
            text = self._texts[stream]
            found = [
                text.feed(data[i : i + LOG_CHUNK_BYTES])
                for i in range(0, len(data), LOG_CHUNK_BYTES)
            ]
            if final:
                found.append(text.flush())
            pieces += [(stream, *p) for p in found if p is not None]
        return pieces
