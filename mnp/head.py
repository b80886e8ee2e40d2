"""The head node process: the one place that assembles store, scheduler, service and app.

``run(config)`` blocks until SIGTERM/SIGINT (detach) or :data:`~mnp.config.STOP_NODES_SIGNAL`.
Start-up order: bind the socket (so the URL is known), publish it in ``head.url`` (where
local agents look for the head), open the store, load state and adopt the nodes an earlier
head left running, create the embedded default, publish ``head.json``, then serve and
schedule. Shut-down removes ``head.json`` and, by default, *detaches*: it saves the state and
exits, the nodes' agents and their jobs keep running, and the next head on this home (on
any port) adopts them. Only the stop-nodes signal (``mnp down --stop-nodes``) stops the nodes.
Everything the head keeps is private to its user (see :mod:`mnp.config`): the process runs
with umask 077 and the home is made (or fixed to be) 0700 with 0600 files before anything
is opened in it.
``python -m mnp.head`` runs one with the default configuration; ``mnp up`` is the usual way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pwd
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

import mnp
from mnp.api.agents import PollWaiters
from mnp.api.app import HOT_ROUTES, build_app
from mnp.api.aws import batch_shapes
from mnp.api.fastpath import FastRoutes, fast_protocol
from mnp.api.metrics import HeadCollector, HeadMetrics
from mnp.config import (
    STOP_NODES_SIGNAL,
    HeadConfig,
    HeadInfo,
    ensure_token,
    head_home,
    make_process_private,
    secure_home,
    tune_gc,
    write_private,
)
from mnp.nodes.sessions import NodeSessions
from mnp.providers import sshbundle
from mnp.scheduler.fleet import in_thread, inline
from mnp.scheduler.lag import LagGuard
from mnp.scheduler.loop import Scheduler
from mnp.scheduler.state import HeadState
from mnp.service import render
from mnp.service.core import Service
from mnp.service.events.bus import EventBus
from mnp.service.events.ops import event_operations
from mnp.service.operations import Handler, native_operations
from mnp.service.users import Caller
from mnp.spec.jobs import Job
from mnp.spec.states import JobStatus
from mnp.store.sqlite import Store

log = logging.getLogger("mnp.head")

TICK_GATHER_SECONDS = 0.002
IDLE_TICK_SECONDS = 0.5
TICK_INTERVAL_SECONDS = 0.01
"""The least time between two ticks of a busy head (Slurm's ``sched_min_interval``): a tick
costs about the same for one new job as for ten, so under a stream of submits and reports
the work of that time is placed, written and handed to each node in one go (paired runs of
1,000 trivial singles on 16 slots: head CPU per job 1.47 ms with no interval, 1.2 ms at
10 or 20 ms). Longer delays short jobs' slots: 428 jobs/s at 20 ms against 511 at 10 ms, at
the same CPU per job. An idle head still ticks ``TICK_GATHER_SECONDS`` after a wake."""
PASS_SHARE = 0.05
"""The most of a busy head's time its scheduling passes may take: ticks are spaced at least
the current pass cost (:attr:`mnp.scheduler.loop.Scheduler.pass_seconds`) divided by this.
A FIFO queue's pass between two walks for reasons costs about 0.05 ms at any depth, a
fair-share queue's 16 ms and a fragmented one's 65 ms at 100,000 RUNNABLE
(``benchmarks/passcost.py``): the deep queues that need room get it. Timed over the pass's
deciding only (no writes), so a slow commit (a WAL checkpoint) does not space the next ticks
out."""
TICK_SECONDS_PER_RUNNABLE = 20e-6
"""How much longer a head whose last pass placed nothing waits, per RUNNABLE job: its nodes
are full, so the next tick has only new submissions to move on (SUBMITTED to RUNNABLE, one
commit for all of them) until a slot frees; a head placing work ticks every
:data:`TICK_INTERVAL_SECONDS` however deep its queue, so a stream of short jobs keeps its
slots busy. On 1,000 submits behind full nodes (``benchmarks/hq_compare.py``'s submit cost),
ticking every 10 ms cost the head ≈ 50 µs per SubmitJob."""
TICK_INTERVAL_MAX_SECONDS = 1.0


def tick_interval(pass_seconds: float, runnable: int = 0, placed: bool = True) -> float:
    """The least time between ticks when a pass costs ``pass_seconds``, with ``runnable``
    jobs waiting, after a pass that ``placed`` work or not."""
    floor = TICK_INTERVAL_SECONDS if placed else runnable * TICK_SECONDS_PER_RUNNABLE
    return min(TICK_INTERVAL_MAX_SECONDS,
               max(TICK_INTERVAL_SECONDS, floor, pass_seconds / PASS_SHARE))  # fmt: skip


def event_detail(job: Job) -> dict[str, Any]:
    """A job as DescribeJobs shows it on the AWS wire: an event's ``detail``."""
    return batch_shapes.job_detail(render.job_detail(job))


class Head:
    """Everything one head node process holds, wired together."""

    def __init__(self, config: HeadConfig, url: str) -> None:
        head_home(config.home)  # _serve fixed up the whole home before this
        self.config = config
        self.url = url
        self.started_at = int(time.time() * 1000)
        self.store = Store(config.db_path)
        self.state = HeadState(config, self.store)
        self.scheduler = Scheduler(self.state, url)
        self.lag = LagGuard(self.state.clock)
        self.scheduler.lag = self.lag
        self.provider_threads = ThreadPoolExecutor(2, thread_name_prefix="mnp-provider")
        """Where the providers' blocking stops run once serving (:meth:`offload_providers`)."""
        self.host_threads = ThreadPoolExecutor(
            config.host_bringup_threads, thread_name_prefix="mnp-hosts"
        )
        """Where SSH hosts are brought up and stopped (several hosts at once)."""
        self.sessions = NodeSessions(self.scheduler)
        self.service = Service(self.state, self.scheduler)
        self.wake = asyncio.Event()
        self.waiters = PollWaiters()
        self.state.on_wake = self.wake.set
        self.state.on_node_work = self.waiters.wake
        # status changes feed the metrics' counters and the events (both only enqueue)
        self.metrics = HeadMetrics()
        self.events = EventBus(self.store, event_detail)
        self.metrics.collect_from(
            HeadCollector(self.state, self.store, self.lag, self.store.events.counts)
        )
        self.state.on_status = self.on_status
        # The native API's table: the service's one table of operations, plus the head's own.
        self.ops: dict[str, Handler] = {
            **native_operations(self.service),
            "getStatus": self.get_status,
            **event_operations(self.service, self.events),
        }

    def on_status(self, job: Job, old: JobStatus) -> None:
        self.metrics.observe(job, old)
        self.events.observe(job, old)

    def start(self) -> None:
        self.service.load()
        self.service.ensure_defaults()
        self.scheduler.tick()

    def get_status(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": mnp.__version__,
            "url": self.url,
            "home": str(self.config.home),
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "jobCounts": self.store.count_jobs_by_status(),
            "queues": len(self.state.queues),
            "computeEnvironments": len(self.state.ces),
            "nodes": sum(1 for n in self.state.nodes.values() if n.status.value == "ACTIVE"),
            "loopLag": self.lag.status(),
        }

    async def lag_loop(self) -> None:
        """Observe the event loop every period: a late wake-up is a stall
        (:mod:`mnp.scheduler.lag`)."""
        period = self.lag.period_ms / 1000
        while True:
            await asyncio.sleep(period)
            lag = self.lag.observe()
            if lag > 1000:
                log.warning("the head's event loop was stalled for %.1f s", lag / 1000)

    async def scheduler_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_tick = -TICK_INTERVAL_SECONDS
        interval = TICK_INTERVAL_SECONDS
        while True:
            try:
                idle = max(IDLE_TICK_SECONDS, interval)  # a deep queue's idle ticks too
                await asyncio.wait_for(self.wake.wait(), timeout=idle)
                # let a burst of submissions and reports land first: one tick, one write;
                # a busy head ticks at most every ``interval``, so the work of that time is
                # placed, written and handed to each node in one go
                since = loop.time() - last_tick
                await asyncio.sleep(max(TICK_GATHER_SECONDS, interval - since))
            except TimeoutError:
                pass
            self.wake.clear()
            last_tick = loop.time()
            try:
                self.scheduler.tick()
                interval = tick_interval(
                    self.scheduler.pass_seconds,
                    sum(map(len, self.state.runnable.values())),
                    self.scheduler.placed,
                )
            except Exception:
                # the tick changed nothing (Scheduler.tick); wait before the next one so a
                # store that stays unwritable (disk full) is not retried in a tight loop
                log.exception("scheduler tick failed")
                await asyncio.sleep(IDLE_TICK_SECONDS)

    def offload_providers(self) -> None:
        """From now on (call on the running loop) providers' launches and stops run in
        :attr:`provider_threads`, so the loop keeps answering polls while they wait."""
        self.scheduler.fleet.offload = in_thread(self.provider_threads)
        hosts, loop = self.scheduler.hosts, asyncio.get_running_loop()
        self.scheduler.fleet.on_loop = loop.call_soon_threadsafe  # a launch's outcome
        hosts.offload = in_thread(self.host_threads)
        loop.run_in_executor(self.provider_threads, self.scheduler.fleet.warm_up)

        def wake_from_thread() -> None:
            loop.call_soon_threadsafe(self.wake.set)

        hosts.wake = wake_from_thread

    def agent_bundle(self) -> bytes:
        """The bytes of this head's agent bundle (built once; EC2 instances install it)."""
        return sshbundle.current().tar

    def answer_waiting_polls(self) -> None:
        """Let every agent's waiting long poll answer now (with whatever is queued)."""
        for node_id in list(self.state.nodes):
            self.waiters.wake(node_id)

    def shutdown(self, stop_nodes: bool) -> None:
        """Save the state and close the store. ``stop_nodes``: stop every node first (their
        attempts fail as stopped); otherwise leave the nodes and their running attempts as
        they are, for the next head on this home to adopt. Stops already handed to a thread
        finish first; the last ones run here: no agent outlives a stopping head."""
        self.scheduler.fleet.offload = inline
        self.scheduler.fleet.on_loop = inline  # the loop waits below: no other thread runs
        self.scheduler.hosts.offload = inline
        self.provider_threads.shutdown(wait=True)
        self.host_threads.shutdown(wait=True)
        self.scheduler.hosts.shutdown(stop_agents=stop_nodes)
        if stop_nodes:
            nodes = [n for n in self.state.nodes.values()]
            self.scheduler.stop_nodes(nodes, "stopped: the head node shut down")
        self.state.flush()
        self.store.close()


# --- users' client files ---------------------------------------------------------------------
CLIENT_DIR = ".mnp"
CLIENT_FILE = "client.json"
AWS_FILE = "aws-credentials"
AWS_PROFILE = "mnp"


def _open_user_dir(pw: pwd.struct_passwd, create: bool) -> int | None:
    """An fd of ``~user/.mnp``, owned by the user and mode 0700 (made so), or None when it
    does not exist (and not ``create``). Never follows a symlink there: the user owns that
    directory and could point it anywhere."""
    home_fd = os.open(pw.pw_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if create:
            try:
                os.mkdir(CLIENT_DIR, 0o700, dir_fd=home_fd)
            except FileExistsError:
                pass
        try:
            fd = os.open(CLIENT_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home_fd)
        except FileNotFoundError:
            return None
    finally:
        os.close(home_fd)
    os.fchown(fd, pw.pw_uid, pw.pw_gid)
    os.fchmod(fd, 0o700)
    return fd


def _write_user_file(dir_fd: int, name: str, text: str, pw: pwd.struct_passwd) -> None:
    """Write ``name`` in the user's directory as a new file (O_EXCL: never through a link
    the user left there) owned by the user, mode 0600, then rename it into place."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        os.fchown(fd, pw.pw_uid, pw.pw_gid)
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def install_client_files(name: str, url: str, token: str, key_id: str, secret: str) -> list[Path]:
    """As root, for the local account ``name``: write ``~name/.mnp/client.json`` (url and
    token) and ``~name/.mnp/aws-credentials`` (profile ``mnp``), owned by ``name``, files
    0600 in a 0700 folder. Returns the paths written; [] when ``name`` is no local account
    or this process is not root (then the caller shows the secrets instead)."""
    if os.geteuid() != 0:
        return []
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return []
    fd = _open_user_dir(pw, create=True)
    assert fd is not None  # created above
    try:
        _write_user_file(fd, CLIENT_FILE, json.dumps({"url": url, "token": token}) + "\n", pw)
        aws = (f"[{AWS_PROFILE}]\naws_access_key_id = {key_id}\n"
               f"aws_secret_access_key = {secret}\n")  # fmt: skip
        _write_user_file(fd, AWS_FILE, aws, pw)
    finally:
        os.close(fd)
    folder = Path(pw.pw_dir) / CLIENT_DIR
    return [folder / CLIENT_FILE, folder / AWS_FILE]


def refresh_client_urls(names: list[str], url: str) -> int:
    """As root, point each local user's existing ``client.json`` at ``url`` (the head may
    have moved port), keeping its token. Best effort: a user without one, or whose file is
    unreadable, is skipped (and logged). Returns how many were rewritten."""
    if os.geteuid() != 0:
        return 0
    done = 0
    for name in names:
        try:
            pw = pwd.getpwnam(name)
            fd = _open_user_dir(pw, create=False)
            if fd is None:
                continue
            try:
                file_fd = os.open(CLIENT_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                with os.fdopen(file_fd) as f:
                    doc = json.load(f)
                if not isinstance(doc, dict) or doc.get("url") == url:
                    continue
                doc["url"] = url
                _write_user_file(fd, CLIENT_FILE, json.dumps(doc) + "\n", pw)
                done += 1
            finally:
                os.close(fd)
        except (KeyError, OSError, ValueError) as e:
            log.info("client.json of %s not refreshed: %s", name, e)
    if done:
        log.info("pointed %d users' client.json at %s", done, url)
    return done


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``before_shutdown`` (which answers the agents' waiting long
    polls) as it starts to shut down, so those polls do not hold the exit for the whole
    graceful timeout (2 s → a few tenths of a second for ``mnp down``)."""

    def __init__(self, config: uvicorn.Config, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's shutdown runs without awaiting up to the point where it waits for the
        # connections, so the polls woken here answer on connections already closing.
        self._before_shutdown()
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says TCP, and without it every answer waits ~40 ms (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def run(config: HeadConfig) -> None:
    """Run a head node in this process until SIGTERM or SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    make_process_private()
    tune_gc()
    try:
        import uvloop  # a faster event loop; plain asyncio works too
    except ImportError:
        asyncio.run(_serve(config))
    else:
        uvloop.run(_serve(config))


async def _serve(config: HeadConfig) -> None:
    secure_home(config.home)
    if config.token is None:  # the native API always asks for a token; clients read head.json
        config = dataclasses.replace(config, token=ensure_token(config.home))
    sock = bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    # before any agent is launched or adopted: a detached agent finds this head through it
    write_private(config.head_url_file, url + "\n")
    head = Head(config, url)
    head.start()
    refresh_client_urls(head.service.users.names(), url)
    head.offload_providers()
    app = build_app(head, head.ops, head.events, head.metrics)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        head.lag.observe()  # start-up (store, adoption) is not a stall of the serving loop
        tasks = [
            asyncio.create_task(head.scheduler_loop()),
            asyncio.create_task(head.lag_loop()),
            asyncio.create_task(head.events.run()),  # undelivered events from before too
        ]
        # the dashboard's charts cover the hour before anyone opens them
        _app.state.dashboard_sampler.start()
        HeadInfo(url=url, pid=os.getpid(), token=config.token).write(config.head_file)
        write_private(config.pid_file, str(os.getpid()))
        log.info("mnp head node at %s (home %s)", url, config.home)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await head.events.stop()

    app.router.lifespan_context = lifespan
    server = _Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            # no proxy in front: a local client's X-Forwarded-For must not rename it (and the
            # middleware's header walk was a few % of the head's CPU per request)
            proxy_headers=False,
            # the routes every job goes through, answered past ASGI (mnp.api.fastpath)
            http=fast_protocol(FastRoutes(app, HOT_ROUTES, head.metrics.observe_request)),
        ),
        head.answer_waiting_polls,
    )
    # uvicorn re-raises the signal that stopped it once it is done; by then we only want to
    # finish shutting down, so make those signals no-ops here.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    stop_nodes = False

    def stop_with_nodes() -> None:
        nonlocal stop_nodes
        stop_nodes = True
        server.should_exit = True

    asyncio.get_running_loop().add_signal_handler(STOP_NODES_SIGNAL, stop_with_nodes)
    try:
        await server.serve(sockets=[sock])
    finally:
        head.shutdown(stop_nodes)
        for path in (config.head_file, config.pid_file):
            try:
                path.unlink()
            except FileNotFoundError:
                pass


def main() -> None:
    """``python -m mnp.head``: a head node with the default configuration."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run(HeadConfig())


if __name__ == "__main__":
    main()
