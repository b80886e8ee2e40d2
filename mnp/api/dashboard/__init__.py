"""The web dashboard: ``GET /dashboard/`` (the page) and ``/dashboard/static/<file>`` (its
scripts and styles), shipped inside this package, so the head needs no CDN and nothing is
built at install time (see ``docs/dashboard.md``).

The page itself holds no data and needs no login: it asks the native API for everything
(``POST /api/v1/<op>`` with the token the user typed in, :mod:`mnp.api.native`), so the
dashboard is exactly as authenticated and authorized as the CLI. Every answer carries a
Content-Security-Policy that allows only this origin's scripts, styles and connections:
with the token in the page's session storage, no injected script may run to read it.

The dashboard's one view of its own, the last hour of queue depth and throughput, is a
:class:`~mnp.service.dashboard.Series` sampled here on a timer (:class:`Sampler`), started with
the head's loop (:mod:`mnp.head`), so the charts cover the hour before anyone opens them (a
sample is a few counts read from memory every 10 s); a request starts it too where no head does.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mnp.service.dashboard import Series
from mnp.service.users import Caller

log = logging.getLogger("mnp.api.dashboard")

STATIC = Path(__file__).parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Sampler:
    """Samples ``series`` every period on the event loop, once started (:meth:`start`)."""

    def __init__(self, series: Series) -> None:
        self.series = series
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling (idempotent; call on the event loop)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        period = self.series.every_ms / 1000
        while True:
            try:
                self.series.sample_if_due()
            except Exception:  # a store that cannot be read now: the next sample may
                log.exception("dashboard sample failed")
            await asyncio.sleep(period)

    def handler(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        """``dashboardSeries``: the samples kept (open to every identity)."""
        self.start()
        return self.series.to_json()


def static_files() -> dict[str, Path]:
    """The files served, by name: exactly those shipped (no path is looked up as given)."""
    return {
        str(p.relative_to(STATIC)): p
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in MEDIA_TYPES
    }


def routes(sampler: Sampler) -> list[Route]:
    files = static_files()

    def send(path: Path) -> Response:
        return Response(
            path.read_bytes(), media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS
        )

    async def index(request: Request) -> Response:
        sampler.start()
        return send(files["index.html"])

    async def static(request: Request) -> Response:
        path = files.get(request.path_params["name"])
        if path is None:
            return Response("not found", status_code=404, headers=SECURITY_HEADERS)
        return send(path)

    async def bare(request: Request) -> Response:
        return RedirectResponse("/dashboard/", status_code=308)

    return [
        Route("/dashboard", bare, methods=["GET"]),
        Route("/dashboard/", index, methods=["GET"]),
        Route("/dashboard/static/{name:path}", static, methods=["GET"]),
    ]
