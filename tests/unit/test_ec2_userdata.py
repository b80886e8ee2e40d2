"""An EC2 node's user data: golden files, MIME structure, and the script run for real with
``mount`` and the agent replaced by recording stubs (curl, tar, sha256sum, setsid are real;
the metadata service and the head's bundle are real servers on 127.0.0.1)."""

from __future__ import annotations

import email
import hashlib
import io
import os
import signal
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mnp.ec2 import userdata as ud
from mnp.errors import InvalidInput
from mnp.spec.sharedfs import SharedFilesystem, SharedFilesystemKind
from tests.ec2sim.imds import ImdsServer, MetadataDoc
from tests.unit import goldens

TOKEN = "join-token-0123456789abcdefghijklmnopqrstuvwxyz"
LUSTRE_DNS = "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com"
EFS_DNS = "fs-0fedcba9876543210.efs.us-east-1.amazonaws.com"


def boot(**kw: Any) -> ud.NodeBoot:
    base: dict[str, Any] = dict(
        head="http://10.0.0.5:8750",
        node_id="gpu-ce-7",
        compute_environment="gpu-ce",
        join_token=TOKEN,
        vcpus=72,
        memory_mib=196608,
        gpus=0,
        version="0.1.0",
        bundle_sha256="0" * 64,
    )
    base.update(kw)
    return ud.NodeBoot(**base)


def fs(kind: str, mount_path: str = "/fsx", source: str = "/srv/fsx") -> SharedFilesystem:
    return SharedFilesystem(SharedFilesystemKind(kind), source, mount_path)


TEMPLATE_MIME = """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="==MYBOUNDARY=="

--==MYBOUNDARY==
Content-Type: text/cloud-config; charset="us-ascii"

packages:
- amazon-efs-utils

--==MYBOUNDARY==
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
echo "ECS_CLUSTER=x" >> /etc/ecs/ecs.config

--==MYBOUNDARY==--
"""

CASES = {
    "userdata_lustre.txt": (
        boot(shared_fs=fs("lustre"), fs_remote=ud.lustre_remote(LUSTRE_DNS, "abcdef12")),
        TEMPLATE_MIME,
    ),
    "userdata_efs.txt": (
        boot(shared_fs=fs("efs", "/shared"), fs_remote=EFS_DNS),
        "#!/bin/bash\nyum install -y htop\n",
    ),
    "userdata_nfs.txt": (boot(shared_fs=fs("nfs"), fs_remote="10.0.0.9:/export/home"), None),
    "userdata_plain.txt": (boot(gpus=8, python="python3.11"), None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    b, template = CASES[name]
    goldens.check("", name, ud.user_data(b, template))


@pytest.mark.parametrize("name", sorted(CASES))
def test_parts_parse_as_mime(name: str) -> None:
    b, template = CASES[name]
    message = email.message_from_string(ud.user_data(b, template))
    assert message.get_content_type() == "multipart/mixed"
    assert message.get_boundary() == "=="
    assert message["MIME-Version"] == "1.0"
    parts = [p for p in message.walk() if not p.is_multipart()]
    kinds = [p.get_content_type() for p in parts]
    expected = {
        "userdata_lustre.txt": ["text/cloud-config", "text/x-shellscript", "text/x-shellscript"],
        "userdata_efs.txt": ["text/x-shellscript", "text/x-shellscript"],
    }.get(name, ["text/x-shellscript"])
    assert kinds == expected
    # mnp's part last, exactly its script; the template's parts first, unchanged
    assert parts[-1].get_payload() == ud.node_script(b)
    if name == "userdata_lustre.txt":
        assert parts[0].get_payload() == "packages:\n- amazon-efs-utils\n"
        assert "ECS_CLUSTER=x" in parts[1].get_payload()
    if name == "userdata_efs.txt":
        assert parts[0].get_payload() == "#!/bin/bash\nyum install -y htop\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_script_is_valid_bash(name: str, tmp_path: Path) -> None:
    script = tmp_path / "part.sh"
    script.write_text(ud.node_script(CASES[name][0]))
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("kind", "remote", "argv"),
    [
        ("lustre", f"{LUSTRE_DNS}@tcp:/abcdef12",
         ["mount", "-t", "lustre", "-o", "relatime,flock", f"{LUSTRE_DNS}@tcp:/abcdef12", "/fsx"]),
        ("efs", EFS_DNS, ["mount", "-t", "nfs4", "-o", ud.EFS_OPTIONS, f"{EFS_DNS}:/", "/fsx"]),
        ("efs", f"{EFS_DNS}:/team", ["mount", "-t", "nfs4", "-o", ud.EFS_OPTIONS,
                                     f"{EFS_DNS}:/team", "/fsx"]),
        ("nfs", "nas.internal:/export", ["mount", "-t", "nfs", "nas.internal:/export", "/fsx"]),
        ("bind", None, ["mount", "--bind", "/srv/fsx", "/fsx"]),
    ],
)  # fmt: skip
def test_mount_argv(kind: str, remote: str | None, argv: list[str]) -> None:
    assert ud.mount_argv(fs(kind), remote) == argv


def test_efs_options_are_the_recommended_ones() -> None:
    assert ud.EFS_OPTIONS == (
        "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"
    )


@pytest.mark.parametrize(
    ("kind", "remote", "says"),
    [
        ("lustre", None, "needs its remote source"),
        ("lustre", LUSTRE_DNS, "not a Lustre source"),
        ("lustre", f"{LUSTRE_DNS}@tcp:/x;reboot", "not a Lustre source"),
        ("efs", "fs-1 $(reboot)", "not an EFS DNS name"),
        ("nfs", "nas.internal", "not an NFS source"),
        ("nfs", "-oremount:/x", "not an NFS source"),
        ("bind", "nas:/x", "has no remote source"),
    ],
)
def test_mount_remote_refused(kind: str, remote: str | None, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        ud.mount_argv(fs(kind), remote)


def test_every_bad_field_reported_at_once() -> None:
    bad = boot(
        head="http://h:1\nreboot", node_id="a b", join_token="short", vcpus=0, gpus=-1,
        bundle_sha256="XYZ", version="1.0\n", shared_fs=fs("lustre", "/fs\nx"),
        fs_remote="x",
    )  # fmt: skip
    with pytest.raises(InvalidInput) as e:
        ud.node_script(bad)
    paths = {err.path for err in e.value.errors}
    assert {"head", "nodeId", "joinToken", "vcpus", "gpus", "bundleSha256", "version",
            "sharedFilesystem.mountPath"} <= paths  # fmt: skip


def test_non_ascii_refused() -> None:
    with pytest.raises(InvalidInput, match="printable ASCII"):
        ud.node_script(boot(shared_fs=fs("bind", "/données")))


def test_hostile_values_are_quoted() -> None:
    path = "/data/it's a $HOME; `reboot` dir"
    script = ud.node_script(boot(shared_fs=fs("bind", path, "/srv/$x y")))
    assert "mkdir -p '/data/it'\"'\"'s a $HOME; `reboot` dir'\n" in script
    assert "mount --bind '/srv/$x y' '/data/it'\"'\"'s a $HOME; `reboot` dir'\n" in script


# --- the launch template's own user data ---------------------------------------------------


def test_plain_cloud_config_wrapped() -> None:
    parts = ud.template_parts("#cloud-config\npackages: [htop]\n")
    assert parts == ['Content-Type: text/cloud-config; charset="us-ascii"\n\n'
                     "#cloud-config\npackages: [htop]\n"]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (b"\x1f\x8b\x08\x00gzipped", "launchTemplate userData: .*gzip"),
        ("echo no shebang\n", "launchTemplate userData: must be a MIME multi-part"),
        ('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n'
         "Content-Type: text/x-python\n\nprint(1)\n--b--\n", "part 1 is text/x-python"),
    ],
)  # fmt: skip
def test_template_user_data_refused(given: bytes | str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        ud.user_data(boot(), given)


def test_template_part_with_our_boundary_refused() -> None:
    given = "#!/bin/bash\ncat <<EOF\n--==\nEOF\n"
    with pytest.raises(InvalidInput, match="MIME boundary"):
        ud.user_data(boot(), given)


def test_too_large_refused() -> None:
    big = "#!/bin/bash\n" + "# padding\n" * 1600
    with pytest.raises(ud.UserDataTooLarge, match=r"over EC2's 16384"):
        ud.user_data(boot(), big)
    assert len(ud.user_data(boot(), big[:8000]).encode()) <= ud.MAX_USER_DATA


# --- the script run for real ---------------------------------------------------------------

STUB_MOUNT = """#!/bin/bash
printf '%s\\0' "$@" > "$STUB_LOG/mount.argv"
"""
STUB_PYTHON = """#!/bin/bash
if [ "$1" = "-c" ]; then
  printf '%s\\0' "$@" > "$STUB_LOG/check.argv"
  exit "${STUB_CHECK_EXIT:-0}"
fi
printf '%s\\0' "$@" > "$STUB_LOG/agent.argv"
printf '%s' "$MNP_JOIN_TOKEN" > "$STUB_LOG/agent.token"
printf '%s' "$PYTHONPATH" > "$STUB_LOG/agent.pythonpath"
pwd > "$STUB_LOG/agent.cwd"
echo $$ > "$STUB_LOG/agent.pid"
if [ -n "${STUB_AGENT_EXIT:-}" ]; then
  echo "agent: cannot reach the head" >&2
  exit "$STUB_AGENT_EXIT"
fi
exec sleep 30
"""


class _BundleHandler(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        ok = self.path == ud.BUNDLE_PATH
        data = self.body if ok else b""
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _bundle() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"# the agent\n"
        info = tarfile.TarInfo("launcher/__init__.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def head() -> Iterator[tuple[str, bytes]]:
    tar = _bundle()
    handler = type("Handler", (_BundleHandler,), {"body": tar})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tar
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    with ImdsServer(MetadataDoc(local_ipv4="10.0.1.17")) as server:
        yield server


def _run(
    script: str, tmp_path: Path, imds: ImdsServer, **env: str
) -> subprocess.CompletedProcess[str]:
    stubs, log = tmp_path / "bin", tmp_path / "log"
    stubs.mkdir()
    log.mkdir()
    for name, text in (("mount", STUB_MOUNT), ("python3", STUB_PYTHON)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    (tmp_path / "part.sh").write_text(script)
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    run_env = {**clean, "PATH": f"{stubs}:{os.environ['PATH']}", "STUB_LOG": str(log),
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url, **env}  # fmt: skip
    return subprocess.run(
        ["bash", str(tmp_path / "part.sh")], env=run_env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def _argv(path: Path) -> list[str]:
    return path.read_bytes().decode().split("\0")[:-1]


def _stop_stub_agent(log: Path) -> None:
    pid_file = log / "agent.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_script_runs(tmp_path: Path, head: tuple[str, bytes], imds: ImdsServer) -> None:
    url, tar = head
    mount_path = str(tmp_path / "it's a $HOME; dir")
    home = tmp_path / "home"
    b = boot(head=url, home=str(home), bundle_sha256=hashlib.sha256(tar).hexdigest(),
             shared_fs=fs("lustre", mount_path),
             fs_remote=ud.lustre_remote(LUSTRE_DNS, "abcdef12"))  # fmt: skip
    log = tmp_path / "log"
    try:
        r = _run(ud.node_script(b), tmp_path, imds)
        assert r.returncode == 0, r.stderr
        assert _argv(log / "mount.argv") == [
            "-t", "lustre", "-o", "relatime,flock", f"{LUSTRE_DNS}@tcp:/abcdef12", mount_path
        ]  # fmt: skip
        assert Path(mount_path).is_dir()
        agent_dir = home / "agent" / f"0.1.0-{b.bundle_sha256[:16]}"  # one per bundle
        root = home / "nodes" / "gpu-ce-7"
        assert (agent_dir / "launcher" / "__init__.py").read_text() == "# the agent\n"
        assert (agent_dir / "DIGEST").read_text().strip() == b.bundle_sha256
        assert _argv(log / "check.argv") == ["-c", "import launcher.agent"]
        assert _argv(log / "agent.argv") == [
            "-m", "launcher.agent", "--head", url, "--head-file", f"{root}/head.url",
            "--node-id", "gpu-ce-7", "--compute-environment", "gpu-ce",
            "--address", "10.0.1.17", "--vcpus", "72", "--memory-mib", "196608",
            "--gpus", "0", "--root", str(root), "--ec2",
        ]  # fmt: skip
        assert (log / "agent.token").read_text() == TOKEN
        assert (log / "agent.pythonpath").read_text() == str(agent_dir)
        assert (log / "agent.cwd").read_text().strip() == str(root)
        assert (root / "head.url").read_text() == url + "\n"
        assert TOKEN not in r.stdout + r.stderr
        assert "mnp: agent" in r.stdout
    finally:
        _stop_stub_agent(log)


def test_script_fails_when_the_agent_exits_at_once(
    tmp_path: Path, head: tuple[str, bytes], imds: ImdsServer
) -> None:
    url, tar = head
    b = boot(head=url, home=str(tmp_path / "home"), bundle_sha256=hashlib.sha256(tar).hexdigest())
    r = _run(ud.node_script(b), tmp_path, imds, STUB_AGENT_EXIT="3")
    assert r.returncode == 1
    assert "the agent exited at once" in r.stderr
    assert "cannot reach the head" in r.stderr


def test_script_refuses_another_bundle(
    tmp_path: Path, head: tuple[str, bytes], imds: ImdsServer
) -> None:
    url, _ = head
    b = boot(head=url, home=str(tmp_path / "home"), bundle_sha256="f" * 64,
             shared_fs=fs("nfs", str(tmp_path / "nfs")), fs_remote="nas:/x")  # fmt: skip
    r = _run(ud.node_script(b), tmp_path, imds)
    assert r.returncode == 1
    assert "serves another agent bundle" in r.stderr
    assert (tmp_path / "log" / "mount.argv").exists()  # the mount came first
    assert not (tmp_path / "log" / "agent.argv").exists()


def test_script_fails_when_python_cannot_import_the_agent(
    tmp_path: Path, head: tuple[str, bytes], imds: ImdsServer
) -> None:
    url, tar = head
    b = boot(head=url, home=str(tmp_path / "home"), bundle_sha256=hashlib.sha256(tar).hexdigest())
    r = _run(ud.node_script(b), tmp_path, imds, STUB_CHECK_EXIT="1")
    assert r.returncode == 1
    assert "python3 cannot run the agent" in r.stderr
    assert not (tmp_path / "log" / "agent.argv").exists()
