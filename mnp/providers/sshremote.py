"""The small Python programs the SSH provider runs on a host (``python3 -c <program> args…``).

Each is self-contained standard-library code that prints one JSON line as its answer. PROBE
keeps to syntax any Python 3 reads, so an old interpreter still reports its version (and is
refused by name) instead of failing to parse. Secrets come on stdin (START), never in argv.
"""

from __future__ import annotations

PROBE = r"""
import json, os, sys
version = sys.argv[1]
mem = 0
with open("/proc/meminfo") as f:
    for line in f:
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
try:
    nproc = len(os.sched_getaffinity(0))
except AttributeError:
    nproc = os.cpu_count() or 1
digest = None
try:
    with open(os.path.expanduser("~/.mnp-node/agent/%s/DIGEST" % version)) as f:
        digest = f.read().strip()
except IOError:
    pass
print(json.dumps({"version": list(sys.version_info[:2]), "nproc": nproc,
                  "memory_mib": mem, "digest": digest}))
"""

INSTALL = r"""
import io, os, shutil, sys, tarfile, tempfile
version, digest = sys.argv[1], sys.argv[2]
base = os.path.expanduser("~/.mnp-node/agent")
os.makedirs(base, 0o700, exist_ok=True)
dest = os.path.join(base, version)
tmp = tempfile.mkdtemp(dir=base, prefix=".new-")
with tarfile.open(fileobj=io.BytesIO(sys.stdin.buffer.read())) as tar:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(tmp, filter="data")
    else:
        tar.extractall(tmp)
with open(os.path.join(tmp, "DIGEST"), "w") as f:
    f.write(digest + "\n")
def installed():
    try:
        with open(os.path.join(dest, "DIGEST")) as f:
            return f.read().strip()
    except OSError:
        return None
# another bring-up on a host sharing this home may have installed it meanwhile
if installed() == digest:
    shutil.rmtree(tmp)
else:
    old = "%s.old-%d" % (dest, os.getpid())
    if os.path.exists(dest):
        os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
print('{"installed": true}')
"""

RUNNING = r"""
def running():  # the pid in <root>/agent.pid if it is node_id's agent, alive (no zombie)
    try:
        with open(os.path.join(root, "agent.pid")) as f:
            pid = int(f.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"launcher.agent" in argv and node_id.encode() in argv else None
"""
"""``running()`` for :data:`START` and :data:`STOP` (each defines ``root`` and ``node_id``)."""

START = r"""
import json, os, signal, subprocess, sys
c = json.load(sys.stdin)
home = os.path.expanduser("~/.mnp-node")
agent_dir = os.path.join(home, "agent", c["version"])
root = os.path.join(home, "nodes", c["node_id"])
os.makedirs(root, 0o711, exist_ok=True)
os.chmod(root, 0o711)
def answer(**d):
    print(json.dumps(d))
    sys.exit(0)
""" + RUNNING + r"""
node_id = c["node_id"]
tmp = os.path.join(root, ".head.url.tmp")
with open(tmp, "w") as f:
    f.write(c["head"] + "\n")
os.replace(tmp, os.path.join(root, "head.url"))
pid = running()
if pid is not None:
    answer(pid=pid, adopted=True)
env = dict(os.environ)
env["PYTHONPATH"] = agent_dir
check = subprocess.run([sys.executable, "-c", "import launcher.agent"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
if check.returncode != 0:
    lines = check.stdout.decode(errors="replace").strip().splitlines()
    answer(error="NoUsablePython", message="%s cannot run the agent: %s" % (
        sys.executable, lines[-1] if lines else "exit %d" % check.returncode))
try:
    os.unlink(os.path.join(root, "node.secret"))  # it joins afresh with its join token
except FileNotFoundError:
    pass
for key, name in (("join_token", "MNP_JOIN_TOKEN"), ("token", "MNP_AGENT_TOKEN")):
    env.pop(name, None)
    if c.get(key):
        env[name] = c[key]
argv = [sys.executable, "-m", "launcher.agent", "--head", c["head"],
        "--head-file", os.path.join(root, "head.url"), "--node-id", c["node_id"],
        "--compute-environment", c["compute_environment"], "--address", c["address"],
        "--vcpus", str(c["vcpus"]), "--memory-mib", str(c["memory_mib"]), "--gpus", "0",
        "--root", root] + (["--private-view"] if os.geteuid() == 0 else [])
log = open(os.path.join(root, "agent.log"), "ab")
proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True, cwd=root, env=env)
try:
    code = proc.wait(timeout=1.0)  # an agent that cannot start says so at once
except subprocess.TimeoutExpired:
    answer(pid=proc.pid)
with open(os.path.join(root, "agent.log"), "rb") as f:
    tail = f.read()[-600:].decode(errors="replace").strip().splitlines()
answer(error="AgentFailed", message="the agent exited with %d: %s" % (
    code, tail[-1] if tail else "no output"))
"""

STOP = r"""
import os, signal, sys, time
node_id, grace = sys.argv[1], float(sys.argv[2])
root = os.path.join(os.path.expanduser("~/.mnp-node/nodes"), node_id)
""" + RUNNING + r"""
pid = running()
if pid is not None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while running() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    if running() is not None:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
print('{"stopped": %s}' % ("true" if pid is not None else "false"))
"""
