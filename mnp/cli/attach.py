"""Staying attached to a running job: stream its output, terminate it on Ctrl-C, see its end.

Used by ``mnp run`` / ``mnp mpirun`` (:mod:`mnp.cli.run`), which decide what to follow; this
module knows nothing about how the job was built. It is the CLI's, not the Python API's (that
is :meth:`mnp.client.run.Run.wait`): it takes over SIGINT, SIGTERM and SIGHUP, exits the
process with 128 + the signal and writes through ``click.echo`` like every other command.
:func:`follow` blocks the calling (main) thread until the job is SUCCEEDED or FAILED; output
comes from one :class:`Follower` thread per followed (node) job, each with its own
:class:`Client`.
"""

from __future__ import annotations

import contextlib
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
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What terminates the job while attached: Ctrl-C, and what a supervisor, ``kill`` or a closing
terminal sends (srun forwards them to the job too; left alone they would kill only us)."""
STOP_SECONDS = 2.0
"""After SIGTERM or SIGHUP, how long we wait for the job to end before exiting anyway: whoever
sent it expects us gone soon (and may SIGKILL us); the job's end is the head's to finish."""


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
        """The node id once the job has one (or has ended); None when told to give up and
        the job still has none (one look after the word: a job that ran and ended within one
        poll was placed all the same, and its output is there to print)."""
        while True:
            given_up = self.give_up.is_set()
            try:
                detail = client.describe(self.job_id)
            except NotFound:  # node jobs appear when the gang is placed
                detail = {}
            if detail.get("nodeId") or detail.get("status") in TERMINAL_STATUSES:
                return str(detail.get("nodeId") or "-")
            if given_up:
                return None
            self.give_up.wait(POLL_SECONDS)


class Interrupts:
    """:data:`SIGNALS` while attached: the first sets ``pending`` (the caller terminates the job
    and clears it); the second exits 128 + its number at once (Ctrl-C twice: 130), leaving the
    job to end on its own. SIGTERM or SIGHUP also sets ``signum``: the caller then exits with
    128 + it once the job has ended (or after :data:`STOP_SECONDS`)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.count = 0
        self.pending = threading.Event()
        self.signum: int | None = None
        self.stop_by: float | None = None
        """When a SIGTERM or SIGHUP came: the monotonic time to exit by."""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            click.echo(f"mnp: detached from job {self.job_id}", err=True)
            raise SystemExit(128 + signum)
        if signum != signal.SIGINT:
            self.signum = signum
            self.stop_by = time.monotonic() + STOP_SECONDS
        self.pending.set()

    def exit_code(self) -> int | None:
        """128 + the SIGTERM/SIGHUP received, None when none was."""
        return None if self.signum is None else 128 + self.signum

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        previous = {s: signal.signal(s, self.handle) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def follow(client: Client, make_client: Callable[[], Client], job_id: str, main_job: str,
           targets: Sequence[str], label: bool, interrupts: Interrupts | None = None,
           ) -> tuple[str, int | None]:  # fmt: skip
    """Stream the output of each of ``targets`` (job or node-job ids) until ``job_id`` ends;
    terminate it on Ctrl-C, SIGTERM or SIGHUP (twice: exit 128 + the signal). Returns the job's
    final status and the exit code of ``main_job`` (the job itself, or its main node), None
    when it has none. When the job did not succeed, says why on stderr. After SIGTERM or
    SIGHUP exits 128 + it instead of returning, once the job has ended or
    :data:`STOP_SECONDS` have passed. Call from the main thread (it installs the signal
    handlers for the duration, unless the caller passes ``interrupts`` it installed already:
    a signal that came while the job was being submitted then terminates it at once)."""
    printer = Printer(label)
    followers = [Follower(t, make_client, printer) for t in targets]
    own = interrupts is None
    interrupts = interrupts or Interrupts(job_id)
    interrupts.job_id = job_id
    with interrupts.installed() if own else contextlib.nullcontext(interrupts):
        for f in followers:
            f.start()
        while (detail := client.describe(job_id))["status"] not in TERMINAL_STATUSES:
            if interrupts.stop_by is not None and time.monotonic() >= interrupts.stop_by:
                click.echo(f"mnp: job {job_id} is still ending; not waiting for it", err=True)
                raise SystemExit(interrupts.exit_code())
            if interrupts.pending.wait(POLL_SECONDS):
                interrupts.pending.clear()
                why = "interrupted" if interrupts.signum is None else \
                    signal.Signals(interrupts.signum).name  # fmt: skip
                click.echo(f"mnp: terminating job {job_id}", err=True)
                client.terminate(job_id, f"Terminated by mnp run ({why})")
        drain = DRAIN_SECONDS if interrupts.stop_by is None else STOP_SECONDS
        deadline = time.monotonic() + drain
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
    if (signalled := interrupts.exit_code()) is not None:
        raise SystemExit(signalled)
    return status, code if isinstance(code, int) else None
