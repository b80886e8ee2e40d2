"""A real moto server (``moto_server``) on a free loopback port, for tests that talk to
"AWS" through boto3 over HTTP::

    with MotoServer() as moto:
        ec2 = boto3.client("ec2", **moto.client_args())

Started as a subprocess, ready once its HTTP API answers, stopped by its PID."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.integration.cluster import free_port, wait_for

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class MotoServer:
    """One ``moto_server`` process; its state (every mocked resource) lives until it stops."""

    def __init__(self, region: str = "us-east-1", start_timeout: float = 60.0) -> None:
        self.region = region
        self.start_timeout = start_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_args(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client(service, **...)``: endpoint, region and
        dummy credentials (never the machine's own)."""
        return {"endpoint_url": self.url, "region_name": self.region, **DUMMY_CREDENTIALS}

    def start(self) -> MotoServer:
        exe = shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server is not installed (pip install 'moto[server]')")
        self._dir = Path(tempfile.mkdtemp(prefix="mnp-moto-"))
        self.port = free_port()
        log = (self._dir / "moto.log").open("wb")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            wait_for(f"moto_server on {self.url}", self._ready, timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {self.proc.returncode}: {self.log()}")
        with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2) as r:
            return r.status == 200 or None

    def log(self) -> str:
        path = self._dir / "moto.log" if self._dir else None
        return path.read_text(errors="replace")[-2000:] if path and path.exists() else ""

    def stop(self) -> None:
        """Terminate the process (by its PID), kill it if it lingers, remove its files."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
