# ~425 lines: the agent's three loops (poll, reports, logs) and the head calls they share.
"""The node agent: registers with the head node, long-polls for work, runs it, reports events.

Protocol: :mod:`mnp.spec.protocol`. One asyncio loop runs three tasks over one reused
keep-alive HTTP client (:mod:`launcher.http`):

- the poll loop (register, then ``poll`` forever; 404 → register again; 409 stale session or
  410 → kill every attempt (the head failed them), register again as a new session, and exit
  :data:`EXIT_NODE_LOST` if that is refused with 410 (the node was stopped); connection
  errors → retry, jobs keep running, fenced by the lease: :mod:`launcher.lease`);
  after a failed call (or a non-200 answer) the agent re-reads ``--head-file`` (if given) and
  follows the head to the URL written there, so a head restarted on another port finds its
  agents again;
- the report sender, which posts every queued event in one report as soon as there is any,
  and drops events only once a report carrying them was answered 200;
- the log ticker, which turns new output of running attempts into ``log`` events.

SIGTERM/SIGINT stop the agent gracefully (exit 0). The attempts themselves are
:mod:`launcher.attempts`' (processes: :mod:`launcher.process`, containers:
:mod:`launcher.container`).

Accounts: an agent running as root runs each attempt as its ``runAs`` account (processes,
SSH sessions, containers without a ``user``; see :mod:`launcher.accounts`). An agent that is
not root ignores ``runAs`` and runs every attempt as itself (as AWS Batch runs a job as its
container's user), and logs that once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from launcher import agent_options as opts
from launcher.agent_options import TOKEN_ENV, AgentOptions, load_secret, parse_args, save_secret
from launcher.attempt import NODE_ROOT_ENV, make_private_dir, now_ms
from launcher.attempts import Attempts
from launcher.credentials import CredentialServer
from launcher.headrelay import HeadRelay
from launcher.http import HttpError, JsonHttp, Reply
from launcher.lease import Lease
from launcher.netns import node_cpus
from launcher.spot import SpotWatch, instance_identity
from mnp.spec.protocol import (
    JOIN_TOKEN_ENV,
    JOIN_TOKEN_HEADER,
    NODE_SECRET_HEADER,
    NODE_SECRET_KEY,
    POLL_PATH,
    REGISTER_PATH,
    REPORT_PATH,
    SPOT_NOTICES_KEY,
    TOKEN_HEADER,
    Event,
    InstanceIdentity,
    Poll,
    PollReply,
    Report,
)

if TYPE_CHECKING:
    from launcher.sshd import NodeSshServer

log = logging.getLogger("launcher.agent")

EXIT_NODE_LOST = 3
RETRY_SECONDS = 0.2
REGISTER_MAX_BACKOFF_SECONDS = 1.0
LOG_TICK_SECONDS = 0.5
FLUSH_SECONDS = 2.0
REPORT_MAX_BYTES = 4 * 1024 * 1024
"""Soft cap on the log text in one report (a report always carries at least one event)."""
DEFAULT_HEARTBEAT_SECONDS = 2.0
COALESCE_SECONDS = 0.003
"""How long the report sender lets events gather after the first one (latency vs requests)."""
BUSY_COALESCE_SECONDS = 0.004
"""How long instead when the last report went out less than :data:`BUSY_WINDOW_SECONDS` ago:
a node busy with short jobs sends one report for several of them (each report costs the head
a request and a store commit), an idle one keeps the short wait. A slot freed waits this
long before the head hears of it: 1,000 trivial singles on 16 slots ran at 548 jobs/s with
8 ms and 568–599 with 4 ms (medians of 3 and 4 paired runs), at the same CPU per job."""
BUSY_WINDOW_SECONDS = 0.05
PROBE_COMMANDS = ("true", "exit 0")
"""What ``launcher.wire`` runs over SSH to see that a node is ready; not worth reporting."""


class Agent:
    """One node agent. Create it, then ``await run()`` on the loop that should own the jobs.

    :meth:`request_stop` may be called from the loop (e.g. a signal handler) at any time.
    """

    def __init__(self, options: AgentOptions, *, env: Mapping[str, str] | None = None) -> None:
        """``env``: base environment of every job (default: this process's environment)."""
        self.options = options
        self._attempts = Attempts(
            options.root,
            options.node_id,
            options.address,
            dict(os.environ) if env is None else env,
            self._emit,
        )
        self._attempts.netns = options.netns
        # a node of its own network, or a host's root agent: each attempt its own view
        self._attempts.own_view = options.netns is not None or (
            options.private_view and os.geteuid() == 0
        )
        if options.netns is not None:  # a node of its own: its processes on its vCPUs' share
            self._attempts.cpus = node_cpus(options.address, options.vcpus)
        self._outbox: list[tuple[int, Event]] = []  # (the session it was emitted in, event)
        self._epoch = 0  # the current session: ``sessionEpoch`` of the last register reply
        self._lease = Lease()
        self._outbox_ready = asyncio.Event()
        self._stop = asyncio.Event()
        # Start from the clock so numbers keep increasing across agent restarts.
        self._seq = time.time_ns() // 1000
        self._heartbeat = DEFAULT_HEARTBEAT_SECONDS
        self._client: JsonHttp | None = None
        self._head_url = options.head
        """The URL ``_client`` talks to (``_follow_head_file`` changes both)."""
        self._ssh: NodeSshServer | None = None
        self._secret: str | None = None
        """The node's own secret (:func:`load_secret` at start, or issued on joining)."""
        self._spot = SpotWatch()
        self._instance: InstanceIdentity | None = None

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop the jobs, flush the reports and return 0."""
        self._stop.set()

    def running_ids(self) -> list[str]:
        """What the head is told this node runs: the running attempts, and the ended ones
        whose last event is not delivered yet (else the head, seeing one gone before its exit
        arrives, would fail it as lost)."""
        ending = {e.attempt_id for _, e in self._outbox if e.kind in ("exited", "start_failed")}
        return [*self._attempts.ids(), *sorted(ending - set(self._attempts.ids()))]

    async def run(self) -> int:
        """Serve until stopped (returns 0) or declared lost by the head (returns 3)."""
        root = self.options.root
        root.mkdir(parents=True, exist_ok=True)
        (root / "agent.pid").write_text(f"{os.getpid()}\n")
        self._secret = load_secret(root)
        client = JsonHttp(self.options.head, self._headers())
        self._lease.start()
        await self._attempts.remove_orphan_containers()
        await self._start_ssh()
        # what lets jobs call the head as themselves: their keys, the head's address
        credentials = CredentialServer()
        netns = self.options.netns
        relay = HeadRelay(netns, lambda: self._head_url) if netns else None
        # containers keep the machine's network: on a namespace node they need their own
        machine = CredentialServer() if netns else None
        await credentials.start(netns)
        self._attempts.credentials = credentials
        self._attempts.machine_head_url = lambda: self._head_url
        if machine is not None:
            await machine.start()
            self._attempts.machine_credentials = machine
        if relay is not None:
            await relay.start()
            self._attempts.head_url = lambda: relay.url
        else:
            self._attempts.head_url = lambda: self._head_url
        if self.options.ec2:
            self._instance = await instance_identity()
            self._spot.start()
        try:
            self._client = client
            helpers = [
                asyncio.create_task(self._send_reports()),
                asyncio.create_task(self._tick_logs()),
            ]
            work = asyncio.create_task(self._work())
            stop = asyncio.create_task(self._stop.wait())
            try:
                await asyncio.wait({work, stop, *helpers}, return_when=asyncio.FIRST_COMPLETED)
                for helper in helpers:
                    if helper.done():  # they loop forever: ending means a bug; surface it
                        helper.result()
                        raise RuntimeError("agent helper task ended unexpectedly")
                if work.done():
                    return work.result()
                work.cancel()
                await self._attempts.stop_all()
                await self._flush(FLUSH_SECONDS)
                return 0
            finally:
                for task in [*helpers, work, stop]:
                    task.cancel()
                await asyncio.gather(*helpers, work, stop, return_exceptions=True)
                self._attempts.close()
        finally:
            await credentials.close()
            if machine is not None:
                await machine.close()
            if relay is not None:
                await relay.close()
            self._spot.close()
            self._lease.close()
            await (self._client or client).aclose()  # the last one _follow_head_file made
            if self._ssh is not None:
                await self._ssh.close()
            self._attempts.close_engine()

    async def _start_ssh(self) -> None:
        if self.options.ssh_port is None:
            return
        from launcher.sshd import NodeSshServer  # asyncssh loads only when SSH is served

        root = self.options.root
        for sub in ("tmp", "shm"):  # the agent's own jobs' MPI files: the root is passable
            make_private_dir(root / sub)
        self._ssh = NodeSshServer(
            self.options.address,
            self.options.ssh_port,
            root / "ssh_host_ed25519_key",
            {
                "MNP_NODE_ID": self.options.node_id,
                "MNP_NODE_ADDRESS": self.options.address,
                # fake nodes on one host share /dev/shm: keep each node's MPI files apart
                "TMPDIR": str(root / "tmp"),
                "OMPI_MCA_btl_vader_backing_directory": str(root / "shm"),
                NODE_ROOT_ENV: str(root),
            },
            on_session_exit=self._session_exited,
            on_session_start=self._session_started,
            netns=self.options.netns,
        )
        await self._ssh.start()
        self._ssh.on_group = self._lease.group  # SSH sessions' groups are fenced too
        self._attempts.ssh = self._ssh

    # --- head node calls -------------------------------------------------------------

    async def _post(self, path: str, body: dict[str, Any], read_timeout: float = 5.0) -> Reply:
        """One call to the head; after a failure or a non-200 answer (the port may now be
        someone else's), follow the head file, so the caller's retry reaches the new head."""
        if self._client is None:
            raise RuntimeError("the agent's HTTP client exists only inside run()")
        try:
            reply = await self._client.post(path, body, timeout=read_timeout)
        except HttpError:
            await self._follow_head_file()
            raise
        if reply.status_code != 200:
            await self._follow_head_file()
        return reply

    async def _follow_head_file(self) -> None:
        """Switch every later call to the URL in ``head_file`` if it names another head.

        A missing, unreadable or malformed file keeps the current URL (the head may be
        restarting). Safe from any task: the swap happens before the first await, and a call
        still in flight on the old client fails and is retried on the new one."""
        path = self.options.head_file
        if path is None or self._client is None:
            return
        try:
            url = path.read_text().strip().rstrip("/")
        except OSError:
            return
        if not url or url == self._head_url:
            return
        try:
            client = JsonHttp(url, self._headers())
        except ValueError as exc:
            log.warning("ignoring %s: %s", path, exc)
            return
        old, self._client = self._client, client
        log.info("the head node moved: %s -> %s (from %s)", self._head_url, url, path)
        self._head_url = url
        await old.aclose()

    def _headers(self) -> dict[str, str]:
        """The head's token (if any) and the node's credential: its secret once it has one,
        else its join token."""
        headers = {TOKEN_HEADER: self.options.token} if self.options.token else {}
        if self._secret:
            headers[NODE_SECRET_HEADER] = self._secret
        elif self.options.join_token:
            headers[JOIN_TOKEN_HEADER] = self.options.join_token
        return headers

    async def _use_secret(self, secret: str) -> None:
        """Keep the secret the head issued (saved first: an agent restarted after this point
        must still have it) and send it on every later call. A failed save is logged: this
        run works on, but an agent restarted later could not speak for the node."""
        try:
            save_secret(self.options.root, secret)
        except OSError as exc:
            log.error("could not save the node's secret in %s: %s", self.options.root, exc)
        self._secret = secret
        if self._client is not None:
            old, self._client = self._client, JsonHttp(self._head_url, self._headers())
            await old.aclose()

    async def _register(self) -> bool:
        """Register (with the attempts running now) until the head answers 200 (True: a new
        session, its epoch and lease taken) or 410 (False: the node was stopped)."""
        delay = RETRY_SECONDS
        while True:
            o, ssh = self.options, self._ssh
            key = ssh.host_public_key if ssh is not None else None
            port = ssh.port if ssh else None
            body = opts.registration(o, self.running_ids(), port, key, self._instance)
            sent = time.monotonic()
            try:
                r = await self._post(REGISTER_PATH, body)
                if r.status_code == 200:
                    answer = r.json()
                    self._heartbeat = float(answer.get("heartbeatSeconds", self._heartbeat))
                    self._epoch = int(answer.get("sessionEpoch", 0))
                    self._lease.renew(sent, answer.get("leaseSeconds"))
                    if answer.get(NODE_SECRET_KEY):
                        await self._use_secret(str(answer[NODE_SECRET_KEY]))
                    if answer.get(SPOT_NOTICES_KEY) is True:
                        self._spot.start()
                    log.info("registered node %s (session %d)", o.node_id, self._epoch)
                    return True
                if r.status_code == 410:
                    return False
                log.warning("register: HTTP %s %s", r.status_code, r.text[:200])
            except (HttpError, ValueError, TypeError, AttributeError) as exc:
                log.debug("register failed: %r", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, REGISTER_MAX_BACKOFF_SECONDS)

    async def _work(self) -> int:
        """Register, then poll until the head says the node was stopped."""
        if not await self._register():
            return EXIT_NODE_LOST
        while True:
            # a long poll answered only at its end must still renew the lease in time
            wait = min(self._heartbeat, (self._lease.seconds or self._heartbeat) / 3)
            ready = self._attempts.ready_ids()
            body = Poll(
                self.options.node_id, self.running_ids(), wait, ready, self._epoch,
                self._spot.notice,
            )  # fmt: skip
            sent = time.monotonic()
            try:
                r = await self._post(POLL_PATH, body.to_wire(), read_timeout=wait + 10.0)
            except HttpError as exc:
                log.debug("poll failed: %r", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if r.status_code == 200:
                try:
                    reply = PollReply.from_wire(r.json())
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    log.error("poll: bad reply %r: %s", exc, r.text[:200])
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                self._lease.renew(sent, reply.lease_seconds)  # before new work starts
                self._apply(reply)
            elif r.status_code == 404:
                log.warning("head does not know node %s; registering again", self.options.node_id)
                await self._register()
            elif r.status_code in (409, 410):
                log.error("session %d ended: %s", self._epoch, r.text[:200])
                await self._lease.end_session(self._attempts, self.options.node_id)
                if not await self._register():
                    log.error("node %s was stopped; exiting", self.options.node_id)
                    return EXIT_NODE_LOST
            else:
                log.warning("poll: HTTP %s %s", r.status_code, r.text[:200])
                await asyncio.sleep(RETRY_SECONDS)

    def _apply(self, reply: PollReply) -> None:
        """Start new assignments (idempotently), then apply kills."""
        for assignment in reply.assignments:
            self._lease.assigned(self.options.node_id, assignment)
            self._attempts.start(assignment)
        for kill in reply.kills:
            self._attempts.kill(kill.attempt_id, kill.reason)
        for ready in reply.ready:
            self._attempts.mark_ready(ready.attempt_id)

    def _session_started(self, scope: str, command: str) -> None:
        if command.strip() in PROBE_COMMANDS:
            return
        self._emit(Event(scope, "session_started", now_ms(), reason=command[:500]))

    def _session_exited(self, scope: str, command: str, exit_code: int) -> None:
        if command.strip() in PROBE_COMMANDS:
            return  # launcher.wire's readiness probe
        log.info("ssh session of %s ended with %s: %s", scope, exit_code, command[:200])
        self._emit(
            Event(scope, "session_exited", now_ms(), exit_code=exit_code, reason=command[:500])
        )

    # --- events ------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        """The sink of every attempt: number the event, queue it, wake the sender."""
        self._seq += 1
        self._lease.observe(event)
        self._outbox.append((self._epoch, replace(event, seq=self._seq)))
        if event.kind in ("exited", "start_failed"):
            self._attempts.ended(event.attempt_id)
        self._outbox_ready.set()

    async def _send_reports(self) -> None:
        """Forever: post what is queued; drop it after a 200 or a 409 (its session ended:
        the head failed those attempts already), else retry."""
        failures = 0
        last_sent = -BUSY_WINDOW_SECONDS
        while True:
            if not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                # a short job's "started" and "exited" then travel in one report
                busy = time.monotonic() - last_sent < BUSY_WINDOW_SECONDS
                await asyncio.sleep(BUSY_COALESCE_SECONDS if busy else COALESCE_SECONDS)
                continue
            last_sent = time.monotonic()
            epoch, batch = opts.next_batch(self._outbox, REPORT_MAX_BYTES)
            body = Report(self.options.node_id, batch, epoch).to_wire()
            try:
                r = await self._post(REPORT_PATH, body)
                ok = r.status_code == 200 or (r.status_code == 409 and epoch < self._epoch)
                if not ok:
                    level = logging.DEBUG if failures else logging.WARNING
                    log.log(level, "report: HTTP %s %s", r.status_code, r.text[:200])
            except HttpError as exc:
                log.log(logging.DEBUG if failures else logging.WARNING, "report failed: %r", exc)
                ok = False
            if ok:
                del self._outbox[: len(batch)]
                failures = 0
                continue
            failures += 1
            if failures > 1:  # a stale keep-alive connection deserves one immediate retry
                await asyncio.sleep(RETRY_SECONDS)

    async def _tick_logs(self) -> None:
        while True:
            await asyncio.sleep(LOG_TICK_SECONDS)
            self._attempts.read_logs()

    # --- stopping ----------------------------------------------------------------------

    async def _flush(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the sender to deliver every queued event."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self._outbox and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if self._outbox:
            log.warning("stopping with %d undelivered events", len(self._outbox))


async def _serve(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop)
    return await agent.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run an agent until it stops; returns the process exit code (0, or 3 if node lost)."""
    options = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("MNP_AGENT_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s agent[{options.node_id}] %(levelname)s %(message)s",
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # several lines per connection
    secret_env = (TOKEN_ENV, JOIN_TOKEN_ENV)  # jobs never see the agent's credentials
    env = {k: v for k, v in os.environ.items() if k not in secret_env}
    agent = Agent(options, env=env)
    try:
        import uvloop  # the head's event loop, in C: a fifth of a short job's agent CPU
    except ImportError:  # an SSH host's bundle carries none: plain asyncio works as well
        return asyncio.run(_serve(agent))
    return uvloop.run(_serve(agent))


__all__ = ["Agent", "AgentOptions", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
