"""Staying attached to a running job: stream its output, terminate it on Ctrl-C, see its end.

Used by ``mnp run`` / ``mnp mpirun`` (:mod:`mnp.cli.run`), which decide what to follow; this
module knows nothing about how the job was built. It is the CLI's, not the Python API's (that
is :meth:`mnp.client.run.Run.wait`): it takes over SIGINT, exits the process with 130 and writes
through ``click.echo`` like every other command. :func:`follow` blocks the calling (main)
thread until the job is SUCCEEDED or FAILED; output comes from one :class:`Follower` thread
per followed (node) job, each with its own :class:`Client`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

import click

from mnp.client.client import TERMINAL_STATUSES, Client
from mnp.errors import NotFound

POLL_SECONDS = 0.2
DRAIN_SECONDS = 10.0
"""How long the output of nodes may lag behind the job's end before we stop following it."""
EXIT_INTERRUPTED = 130


class Printer:
    """Writes lines from several follower threads whole, optionally labelled with the node."""

    def __init__(self, label: bool) -> None:
        self.label = label
        self._lock = threading.Lock()

    def line(self, node: str, text: str) -> None:
        if self.label:
            text = f"{node}: {text}" if text.endswith("\n") else f"{node}: {text}\n"
        with self._lock:
            click.echo(text, nl=False)


class Follower(threading.Thread):
    """Streams one (node) job's output once it is placed; gives up waiting for placement when
    ``give_up`` is set (the job ended before that node was ever created)."""

    def __init__(self, job_id: str, make_client: Callable[[], Client], printer: Printer) -> None:
        super().__init__(name=f"follow {job_id}", daemon=True)
        self.job_id = job_id
        self.make_client = make_client
        self.printer = printer
        self.give_up = threading.Event()

    def run(self) -> None:
        try:
            with self.make_client() as client:
                node = self._wait_placed(client)
                if node is None:
                    return
                lines = client.logs(self.job_id, follow=True)
                try:
                    for line in lines:
                        self.printer.line(node, line)
                finally:
                    lines.close()
        except Exception as exc:  # a follower must not die silently
            click.echo(f"mnp: cannot follow the output of {self.job_id}: {exc}", err=True)

    def _wait_placed(self, client: Client) -> str | None:
        """The node id once the job has one (or has ended); None when told to give up."""
        while True:
            try:
                detail = client.describe(self.job_id)
            except NotFound:  # node jobs appear when the gang is placed
                detail = {}
            if detail.get("nodeId") or detail.get("status") in TERMINAL_STATUSES:
                return str(detail.get("nodeId") or "-")
            if self.give_up.wait(POLL_SECONDS):
                return None


class Interrupts:
    """SIGINT while attached: the first sets ``pending`` (the caller terminates the job and
    clears it); the second exits 130 at once, leaving the job to end on its own."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.count = 0
        self.pending = threading.Event()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            click.echo(f"mnp: detached from job {self.job_id}", err=True)
            raise SystemExit(EXIT_INTERRUPTED)
        self.pending.set()

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def follow(client: Client, make_client: Callable[[], Client], job_id: str, main_job: str,
           targets: Sequence[str], label: bool) -> tuple[str, int | None]:  # fmt: skip
    """Stream the output of each of ``targets`` (job or node-job ids) until ``job_id`` ends;
    terminate it on Ctrl-C (twice: exit 130). Returns the job's final status and the exit code
    of ``main_job`` (the job itself, or its main node), None when it has none. When the job
    did not succeed, says why on stderr. Call from the main thread (it installs a SIGINT
    handler for the duration)."""
    printer = Printer(label)
    followers = [Follower(t, make_client, printer) for t in targets]
    interrupts = Interrupts(job_id)
    with interrupts.installed():
        for f in followers:
            f.start()
        while (detail := client.describe(job_id))["status"] not in TERMINAL_STATUSES:
            if interrupts.pending.wait(POLL_SECONDS):
                interrupts.pending.clear()
                click.echo(f"mnp: terminating job {job_id}", err=True)
                client.terminate(job_id, "Terminated by mnp run (interrupted)")
        deadline = time.monotonic() + DRAIN_SECONDS
        for f in followers:
            f.give_up.set()
            f.join(max(0.0, deadline - time.monotonic()))
            if f.is_alive():
                click.echo(f"mnp: stopped following {f.job_id} (its output lags)", err=True)
    main = detail
    if main_job != job_id:
        try:
            main = client.describe(main_job)
        except NotFound:  # the job ended before its nodes were placed
            pass
    code = (main.get("container") or {}).get("exitCode")
    status = str(detail["status"])
    if status != "SUCCEEDED":
        why = detail.get("statusReason") or "no reason given"
        shown = "" if code is None else f", exit code {code}"
        click.echo(f"mnp: job {job_id} {status}: {why}{shown}", err=True)
    return status, code if isinstance(code, int) else None
