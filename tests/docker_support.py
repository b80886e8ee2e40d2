"""A Docker engine and locally built images for the container tests and benchmarks.

Nothing is pulled: both test images are ``docker import``-ed root filesystems made of this
machine's own files (Debian 12 merged-/usr layout), tagged by a hash of their contents and
reused when the tag exists, so a rerun costs a ``/_ping`` and two inspects.

- ``base`` — dash, coreutils, grep and their libraries: enough for ``sh -c`` jobs,
  ``id``, and eating memory past a limit (``head -c … /dev/zero | tail``: tail keeps a whole
  "line" in memory).
- ``mpi`` — the base, the OpenSSH client, and this Python (at its own path, standard
  library only) with mpi4py and the MPICH wheel (``mpiexec`` beside ``python3``).

:class:`DockerEngine` uses the engine at ``$DOCKER_HOST``, ``/var/run/docker.sock`` or
:data:`STATE`'s socket (another test session's) when one answers, else starts
``dockerd --bridge=none --iptables=false`` (no bridge network, no firewall rules: containers
use the host's loopback only) on private sockets and stops it by PID afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("MNP_TEST_DOCKER_DIR", "/var/tmp/mnp-test-docker"))
"""The engine we start keeps its images here between runs (so image builds are reused)."""
DEFAULT_SOCKET = "/var/run/docker.sock"
BASE_TOOLS = (
    "sh", "dash", "cat", "echo", "env", "id", "head", "tail", "sleep", "ls", "mkdir", "touch",
    "true", "false", "printf", "rm", "test", "whoami", "stat", "dd", "wc", "grep", "seq",
    "kill", "cp", "tr", "date",
)  # fmt: skip
MPI_TOOLS = ("ssh",)
LABEL_FILTER = "mnp.node-id"
BUILD_VERSION = "1"


@dataclass
class DockerEngine:
    host: str = ""
    """``unix://…`` of the engine in use."""
    pid: int | None = None
    """Set when this object started the engine (and so stops it)."""
    images: dict[str, str] = field(default_factory=dict)

    def api(self) -> Any:
        import docker

        return docker.APIClient(base_url=self.host, version="auto")

    def start(self, timeout: float = 60.0) -> DockerEngine:
        """Use a running engine or start one; returns once ``/_ping`` answers."""
        sock = STATE / "docker.sock"  # another session's engine, say
        for host in (
            os.environ.get("DOCKER_HOST", ""),
            f"unix://{DEFAULT_SOCKET}",
            f"unix://{sock}",
        ):
            if host and _ping(host):
                self.host = host
                return self
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("no Docker engine runs and dockerd is not installed (docker.io)")
        for sub in ("data", "exec"):
            (STATE / sub).mkdir(parents=True, exist_ok=True)
        self.host = f"unix://{sock}"
        argv = [
            dockerd, "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--data-root", str(STATE / "data"), "--exec-root", str(STATE / "exec"),
            "--pidfile", str(STATE / "docker.pid"), "-H", self.host,
        ]  # fmt: skip
        log = open(STATE / "dockerd.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.pid = proc.pid
        deadline = time.monotonic() + timeout
        while not _ping(self.host):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (STATE / "dockerd.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"dockerd did not answer within {timeout:g} s:\n{tail}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the engine this object started (SIGTERM, SIGKILL after 20 s); else nothing."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            _end(pid)
        finally:
            _unmount_leftovers()

    def mnp_containers(self) -> list[dict[str, Any]]:
        """Every container (running or not) carrying mnp's labels."""
        return list(self.api().containers(all=True, filters={"label": LABEL_FILTER}))

    def build_images(self) -> dict[str, str]:
        """Build (or find) the test images; returns ``{"base": tag, "mpi": tag}``."""
        base = _closure([shutil.which(t) or t for t in BASE_TOOLS])
        py = Path(sys.base_prefix)
        mpi_files = base | _closure([shutil.which(t) or t for t in MPI_TOOLS]) | _python(py)
        self.images = {
            "base": self._image("mnp-test/base", base, ["PATH=/usr/bin:/bin"]),
            "mpi": self._image("mnp-test/mpi", mpi_files, [f"PATH={py}/bin:/usr/bin:/bin"]),
        }
        return self.images

    def _image(self, repo: str, files: set[Path], env: list[str]) -> str:
        digest = hashlib.sha256(BUILD_VERSION.encode())
        for path in sorted(files):
            st = path.lstat()
            digest.update(f"{path}\0{st.st_size}\0{int(st.st_mtime)}\0".encode())
        digest.update("\0".join(env).encode())
        tag = digest.hexdigest()[:16]
        api = self.api()
        name = f"{repo}:{tag}"
        if api.images(name=name):
            return name
        data = _rootfs_tar(files)
        changes = [f"ENV {e}" for e in env]
        api.import_image_from_data(data, repository=repo, tag=tag, changes=changes)
        if not api.images(name=name):
            raise RuntimeError(f"importing {name} did not produce the image")
        return name


def _ping(host: str) -> bool:
    try:
        import docker

        return bool(docker.APIClient(base_url=host, version="1.41", timeout=2).ping())
    except Exception:
        return False


def _ldd(path: Path) -> set[Path]:
    r = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    found = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                found.add(Path(os.path.normpath(target)))
        elif parts and parts[0].startswith("/"):
            found.add(Path(os.path.normpath(parts[0])))
    return found


def _closure(binaries: list[str]) -> set[Path]:
    """The binaries and every shared library they load (by the path the loader asks for)."""
    out: set[Path] = set()
    for b in binaries:
        p = Path(b)
        out.add(p)
        out |= _ldd(p)
    return out


def _python(prefix: Path) -> set[Path]:
    """This Python's interpreter, standard library (no tests), mpi4py and the MPICH wheel."""
    skip_dirs = {"test", "site-packages", "idlelib", "tkinter", "ensurepip", "lib2to3",
                 "turtledemo", "pydoc_data"}  # fmt: skip
    lib = prefix / "lib"
    stdlib = lib / f"python{sys.version_info.major}.{sys.version_info.minor}"
    files: set[Path] = set()
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.startswith("config-")]
        files |= {Path(root) / n for n in names}
    site = stdlib / "site-packages"
    for pattern in ("mpi4py", "mpi4py-*.dist-info", "mpich-*.dist-info"):
        for top in site.glob(pattern):
            files |= {p for p in top.rglob("*") if not p.is_dir()}
    files |= {p for p in lib.glob("libpython*") if not p.is_dir()}
    files |= {p for p in lib.glob("libmpi*")}
    files |= {p for p in (lib / "mpich").rglob("*") if not p.is_dir()}
    bins = ["python3", "python", f"python{sys.version_info.major}.{sys.version_info.minor}",
            "mpiexec", "mpiexec.hydra", "mpirun", "hydra_pmi_proxy"]  # fmt: skip
    files |= {prefix / "bin" / b for b in bins if (prefix / "bin" / b).exists()}
    libs = [p for p in files if p.suffix == ".so" or ".so." in p.name or p.parent.name == "bin"]
    for p in libs:
        if p.is_file() and not p.is_symlink():
            files |= _ldd(p)
    return files


def _rootfs_tar(files: set[Path]) -> bytes:
    """A root filesystem: merged-/usr symlinks, ``/etc`` basics, then ``files`` (symlinks in
    them kept as symlinks, their targets added too)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        added: set[str] = set()

        def add_dir(name: str, mode: int = 0o755) -> None:
            if name in added or not name:
                return
            parent = str(Path(name).parent)
            if parent != ".":
                add_dir(parent)
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
            added.add(name)

        def add_link(name: str, target: str) -> None:
            add_dir(str(Path(name).parent))
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
            added.add(name)

        def add_text(name: str, text: str, mode: int = 0o644) -> None:
            add_dir(str(Path(name).parent))
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
            added.add(name)

        for d in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/sbin", "etc",
                  "root", "proc", "sys", "dev"):  # fmt: skip
            add_dir(d)
        add_dir("tmp", 0o1777)
        for link in ("bin", "lib", "lib64", "sbin"):
            add_link(link, f"usr/{link}")
        add_text(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nmnpuser:x:1000:1000:mnp:/tmp:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        add_text("etc/group", "root:x:0:\nmnpuser:x:1000:\nnogroup:x:65534:\n")
        todo = sorted(files)
        while todo:
            path = todo.pop()
            name = _in_image(path)
            if name in added:
                continue
            add_dir(str(Path(name).parent))
            if path.is_symlink():
                target = os.readlink(path)
                add_link(name, target)
                todo.append((path.parent / target).resolve(strict=False))
                continue
            if not path.is_file():
                continue
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(path, "rb") as f:
                tar.addfile(info, f)
            added.add(name)
    return buf.getvalue()


def _in_image(path: Path) -> str:
    """Where a host file goes in the image: ``/bin``, ``/lib``… are ``/usr/…`` (merged)."""
    text = str(path)
    for top in ("/bin/", "/lib/", "/lib64/", "/sbin/"):
        if text.startswith(top):
            text = "/usr" + text
    return text.lstrip("/")


def _end(pid: int) -> None:
    """SIGTERM ``pid``, SIGKILL after 20 s; returns once it has exited."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _unmount_leftovers() -> None:
    """dockerd leaves its network-namespace handle (``<exec-root>/netns/default``, an nsfs
    mount) behind when it stops: unmount what it left under our exec root."""
    netns = STATE / "exec" / "netns"
    if not netns.is_dir():
        return
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    for entry in netns.iterdir():
        if any(f" {entry} " in line for line in mounts):
            subprocess.run(["umount", str(entry)], capture_output=True, check=False)
