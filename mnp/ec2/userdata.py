"""An EC2 node's user data: what an instance runs at first boot to become an mnp node.

AWS Batch takes a launch template's user data only as a MIME multi-part archive and appends
its own part to it; mnp does the same with its own part, one bash script that

1. mounts the environment's shared filesystem at its ``mountPath`` (when it has one),
2. installs the head's agent bundle (:mod:`mnp.providers.sshbundle`, fetched from the head
   at :data:`BUNDLE_PATH` and checked against the SHA-256 of its bytes written here), and
3. starts the agent detached, as the SSH provider does (:mod:`mnp.providers.sshremote`):
   the same arguments, the one-time join token in ``$MNP_JOIN_TOKEN`` only, the address
   from the instance metadata service (IMDSv2).

Every value written into the script is checked (printable ASCII: the part says us-ascii;
no newline) and quoted with :func:`shlex.quote`; the whole user data must fit EC2's 16 KiB.
The output is deterministic (fixed boundary), so it is golden-tested byte for byte.

The join token is readable by anything on the instance that reaches the metadata service
(jobs included) once the instance is up; it is spent by then: the agent joins before any
job runs, and a join token works once.
"""

from __future__ import annotations

import email
import email.message
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from mnp.errors import FieldError, InvalidInput
from mnp.spec import protocol
from mnp.spec.protocol import NAME_OR_ARN_RE, NODE_ID_RE
from mnp.spec.sharedfs import (
    HOST_PATTERN,
    SharedFilesystem,
    SharedFilesystemKind,
    remote_problem,
    shared_fs_errors,
)

BOUNDARY = "=="
"""The one boundary mnp writes (fixed: the output is golden-tested)."""
MAX_USER_DATA = 16 * 1024
"""EC2's limit on user data, in bytes before base64 encoding."""
BUNDLE_PATH = protocol.BUNDLE_PATH
"""Where on the head an instance fetches the agent bundle: ``GET`` answers the bytes of
:attr:`mnp.providers.sshbundle.Bundle.tar` (``application/x-tar``), no credential needed
(the head's own code; the script pins its SHA-256)."""
DEFAULT_HOME = "/var/lib/mnp"
"""On the instance: ``agent/<version>-<sha>`` (the installed bundle) and ``nodes/<node id>`` (the
agent's root: workdirs, ``agent.log``, ``head.url``)."""
PART_TYPES = ("text/x-shellscript", "text/cloud-config", "text/cloud-boothook")
"""The parts a launch template's user data may have (cloud-init runs them, in order)."""

LUSTRE_OPTIONS = "relatime,flock"
"""FSx for Lustre's documented mount options."""
EFS_OPTIONS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"
"""The NFS client options AWS recommends for EFS without its mount helper."""

_HOST = HOST_PATTERN
_URL_RE = re.compile(rf"https?://(?:{_HOST}|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?(?:/[!-~]*)?")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,256}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_VERSION_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
_PYTHON_RE = re.compile(r"[A-Za-z0-9/._+-]{1,256}")


class UserDataTooLarge(InvalidInput):
    """The merged user data is over EC2's :data:`MAX_USER_DATA` bytes."""


@dataclass(frozen=True, slots=True)
class NodeBoot:
    """What one instance's script needs: user data is per node (its id, its join token)."""

    head: str
    """The head's base URL as the instance reaches it (``http://10.0.0.5:8750``)."""
    node_id: str
    compute_environment: str
    join_token: str
    """The node's one-time join token (:func:`mnp.spec.environments.new_secret`)."""
    vcpus: int
    memory_mib: int
    gpus: int
    version: str
    """The head's mnp version: the bundle is installed at ``<home>/agent/<version>-<sha>``
    (16 hex digits of :attr:`bundle_sha256`)."""
    bundle_sha256: str
    """SHA-256 (hex) of the bundle's bytes the head serves at :data:`BUNDLE_PATH`."""
    shared_fs: SharedFilesystem | None = None
    fs_remote: str | None = None
    """What to mount for a ``lustre``/``efs``/``nfs`` shared filesystem (its ``source`` is
    the local stand-in): ``<dns>@tcp:/<mountname>`` (:func:`lustre_remote`), the EFS DNS
    name (``fs-….efs.<region>.amazonaws.com``, optionally ``:/<path>``), ``host:/export``."""
    home: str = DEFAULT_HOME
    python: str = "python3"
    """The interpreter that runs the agent (≥ 3.11; some images call it ``python3.11``)."""


def lustre_remote(dns_name: str, mount_name: str) -> str:
    """FSx for Lustre's mount source from the file system's ``DNSName`` and
    ``LustreConfiguration.MountName`` (DescribeFileSystems)."""
    return f"{dns_name}@tcp:/{mount_name}"


def mount_argv(fs: SharedFilesystem, remote: str | None) -> list[str]:
    """The ``mount`` command that puts ``fs`` at its mount path on an instance.

    :class:`InvalidInput` when ``remote`` does not fit the kind (a network kind without
    one, ``bind`` with one, or a malformed address)."""
    path = fs.mount_path
    kind = fs.kind
    if kind is SharedFilesystemKind.BIND:
        if remote is not None:
            raise InvalidInput("sharedFilesystem: a bind mount has no remote source")
        return ["mount", "--bind", fs.source, path]
    if remote is None:
        raise InvalidInput(f"sharedFilesystem: a {kind.value} filesystem needs its remote source")
    problem = remote_problem(kind, remote)  # the one check of a declaration's remote
    if problem:
        raise InvalidInput(f"sharedFilesystem: {remote!r} {problem}")
    if kind is SharedFilesystemKind.LUSTRE:
        return ["mount", "-t", "lustre", "-o", LUSTRE_OPTIONS, remote, path]
    if kind is SharedFilesystemKind.EFS:
        host, _, subdir = remote.partition(":")  # a DNS name has no ':'
        return ["mount", "-t", "nfs4", "-o", EFS_OPTIONS, f"{host}:{subdir or '/'}", path]
    return ["mount", "-t", "nfs", remote, path]


def _check(boot: NodeBoot) -> None:
    """Every problem with ``boot`` at once (:class:`InvalidInput`)."""
    problems: list[FieldError] = []
    text = {
        "head": (boot.head, _URL_RE, "must be an http(s)://host[:port] URL"),
        "nodeId": (boot.node_id, NODE_ID_RE, "is not a node id"),
        "computeEnvironment": (boot.compute_environment, NAME_OR_ARN_RE, "is not a name"),
        "joinToken": (boot.join_token, _TOKEN_RE, "must be 16-256 URL-safe characters"),
        "version": (boot.version, _VERSION_RE, "is not a version"),
        "bundleSha256": (boot.bundle_sha256, _SHA256_RE, "must be 64 lowercase hex digits"),
        "python": (boot.python, _PYTHON_RE, "must be a command name or path"),
    }
    for name, (value, pattern, rule) in text.items():
        if not isinstance(value, str) or not pattern.fullmatch(value):
            problems.append(FieldError(name, rule))
    for name, number in (("vcpus", boot.vcpus), ("memoryMib", boot.memory_mib)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            problems.append(FieldError(name, "must be a positive integer"))
    if isinstance(boot.gpus, bool) or not isinstance(boot.gpus, int) or boot.gpus < 0:
        problems.append(FieldError("gpus", "must be a non-negative integer"))
    home_problems = shared_fs_errors(
        {"kind": "bind", "source": boot.home, "mountPath": boot.home}, "home"
    )
    problems += [FieldError("home", rule) for _, rule in home_problems[:1]]
    if boot.shared_fs is not None:
        fs_problems = shared_fs_errors(boot.shared_fs.to_doc(), "sharedFilesystem")
        problems += [FieldError(path, rule) for path, rule in fs_problems]
        fs = boot.shared_fs
        texts: tuple[tuple[str, str | None], ...] = (
            ("source", fs.source),
            ("mountPath", fs.mount_path),
            ("remote", boot.fs_remote),
        )
        for name, given in texts:
            if given is not None and not (given.isascii() and given.isprintable()):
                problems.append(FieldError(f"sharedFilesystem.{name}", "must be printable ASCII"))
        if not fs_problems:
            try:
                mount_argv(fs, boot.fs_remote)
            except InvalidInput as e:
                problems += e.errors
    elif boot.fs_remote is not None:
        problems.append(FieldError("sharedFilesystem.remote", "is set without a filesystem"))
    if problems:
        raise InvalidInput(problems)


def _line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def node_script(boot: NodeBoot) -> str:
    """mnp's part: the bash script (module docstring). :class:`InvalidInput` naming every
    bad field of ``boot``."""
    _check(boot)
    q = shlex.quote
    mount = ""
    if boot.shared_fs is not None:
        argv = mount_argv(boot.shared_fs, boot.fs_remote)
        mount = (
            "\n# the environment's shared filesystem, at the same path on every node\n"
            f"echo {q('mnp: mounting ' + boot.shared_fs.mount_path)}\n"
            f"mkdir -p {q(boot.shared_fs.mount_path)}\n"
            f"{_line(argv)}\n"
        )
    agent = (
        '"$python" -m launcher.agent --head "$head" --head-file "$root/head.url"',
        '--node-id "$node_id" --compute-environment "$ce" --address "$address"',
        f"--vcpus {boot.vcpus} --memory-mib {boot.memory_mib} --gpus {boot.gpus}",
        '--root "$root" --ec2',
    )
    agent_line = " \\\n  ".join(agent)
    return f"""#!/bin/bash
# mnp node {boot.node_id}: mount the shared filesystem, install the agent, start it.
set -euo pipefail
umask 022
head={q(boot.head)}
node_id={q(boot.node_id)}
ce={q(boot.compute_environment)}
join_token={q(boot.join_token)}
version={q(boot.version)}
bundle_sha256={q(boot.bundle_sha256)}
home={q(boot.home)}
python={q(boot.python)}
imds="${{AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}}"
{mount}
# the agent: the head's bundle, pinned by its SHA-256; installed once per bundle, by rename
# (boots sharing a disk never see half an install, and a running agent keeps its files)
agent_dir="$home/agent/$version-${{bundle_sha256:0:16}}"
if [ "$(cat "$agent_dir/DIGEST" 2>/dev/null)" != "$bundle_sha256" ]; then
  mkdir -p "$home/agent"
  tmp=$(mktemp -d "$home/agent/.install.XXXXXX")
  echo "mnp: fetching the agent from $head"
  curl -fsS --retry 10 --retry-connrefused --retry-delay 2 --connect-timeout 5 \\
    --max-time 300 -o "$tmp/bundle.tar" "$head{BUNDLE_PATH}"
  if ! echo "$bundle_sha256  $tmp/bundle.tar" | sha256sum -c --status -; then
    rm -rf "$tmp"
    echo "mnp: the head at $head serves another agent bundle than this node was launched" \\
      "for (the head was upgraded?): launch the node again" >&2
    exit 1
  fi
  mkdir "$tmp/tree"
  tar -xf "$tmp/bundle.tar" -C "$tmp/tree"
  echo "$bundle_sha256" > "$tmp/tree/DIGEST"
  mv -T "$tmp/tree" "$agent_dir" 2>/dev/null \\
    || [ "$(cat "$agent_dir/DIGEST" 2>/dev/null)" = "$bundle_sha256" ]  # another boot's
  rm -rf "$tmp"
fi
if ! out=$(PYTHONPATH="$agent_dir" "$python" -c 'import launcher.agent' 2>&1); then
  echo "mnp: $python cannot run the agent: ${{out##*$'\\n'}}" >&2
  exit 1
fi

# this node's address, from the instance metadata service (IMDSv2)
imds_token=$(curl -fsS --retry 3 --connect-timeout 2 --max-time 5 -X PUT \\
  -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token")
address=$(curl -fsS --retry 3 --connect-timeout 2 --max-time 5 \\
  -H "X-aws-ec2-metadata-token: $imds_token" "$imds/latest/meta-data/local-ipv4")

# start the agent detached; its join token only in its environment
root="$home/nodes/$node_id"
mkdir -p "$root"
chmod 0711 "$root"
printf '%s\\n' "$head" > "$root/head.url"
rm -f "$root/node.secret"
cd "$root"
MNP_JOIN_TOKEN="$join_token" PYTHONPATH="$agent_dir" setsid \\
  {agent_line} \\
  < /dev/null >> "$root/agent.log" 2>&1 &
pid=$!
sleep 1
case "$(ps -o stat= -p "$pid" 2>/dev/null || true)" in
  "" | Z*)
    echo "mnp: the agent exited at once:" >&2
    tail -n 20 "$root/agent.log" >&2
    exit 1
    ;;
esac
echo "mnp: agent $pid started for node $node_id"
"""


def _part(content_type: str, body: str, extra: Sequence[tuple[str, str]] = ()) -> str:
    headers = "".join(f"{k}: {v}\n" for k, v in (("Content-Type", content_type), *extra))
    return f"{headers}\n{body}" if body.endswith("\n") else f"{headers}\n{body}\n"


def template_parts(user_data: bytes | str) -> list[str]:
    """A launch template's own user data as parts (each its headers, a blank line and its
    body): a MIME multi-part archive's leaf parts as they are; a plain shell script
    (``#!``) or cloud-config (``#cloud-config``) wrapped as one part. :class:`InvalidInput`
    naming ``launchTemplate userData`` for anything else."""
    if isinstance(user_data, bytes):
        try:
            user_data = user_data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                "launchTemplate userData: neither MIME multi-part nor a shell script "
                "(not UTF-8 text: gzip is not supported)"
            ) from None
    text = user_data.replace("\r\n", "\n")
    if not text.strip():
        return []
    if text.startswith("#!"):
        return [_part('text/x-shellscript; charset="us-ascii"', text)]
    if text.startswith("#cloud-config"):
        return [_part('text/cloud-config; charset="us-ascii"', text)]
    head = text.split("\n\n", 1)[0].lower()
    if "content-type:" not in head or "multipart/" not in head:
        raise InvalidInput(
            "launchTemplate userData: must be a MIME multi-part archive "
            '(Content-Type: multipart/mixed; boundary="…") or a shell script starting with #!'
        )
    message = email.message_from_string(text)
    if not message.is_multipart():
        raise InvalidInput("launchTemplate userData: MIME archive without parts")
    parts = []
    for n, leaf in enumerate(p for p in message.walk() if not p.is_multipart()):
        ctype = leaf.get_content_type()
        if ctype not in PART_TYPES:
            raise InvalidInput(
                f"launchTemplate userData: part {n + 1} is {ctype}; "
                f"parts must be one of {', '.join(PART_TYPES)}"
            )
        extra = [(k, v) for k, v in leaf.items() if k.lower() != "content-type"]
        body = leaf.get_payload()  # as written: a base64 part stays base64
        parts.append(_part(str(leaf["Content-Type"]), str(body), extra))
    return parts


def assemble(parts: Sequence[str]) -> str:
    """The MIME multi-part archive of ``parts`` (each from :func:`_part`), with
    :data:`BOUNDARY`; :class:`UserDataTooLarge` past :data:`MAX_USER_DATA`,
    :class:`InvalidInput` when a part holds a line that would end it early."""
    delimiter = f"--{BOUNDARY}"
    for n, part in enumerate(parts):
        if any(line.rstrip(" \t").startswith(delimiter) for line in part.splitlines()):
            raise InvalidInput(
                f"launchTemplate userData: part {n + 1} has a line starting {delimiter!r}, "
                "mnp's MIME boundary"
            )
    out = f'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="{BOUNDARY}"\n\n'
    for part in parts:
        out += f"{delimiter}\n{part}\n"
    out += f"{delimiter}--\n"
    size = len(out.encode("utf-8"))
    if size > MAX_USER_DATA:
        raise UserDataTooLarge(
            f"user data is {size} bytes, over EC2's {MAX_USER_DATA} (mnp's part and the "
            "launch template's userData together)"
        )
    return out


def user_data(boot: NodeBoot, template_user_data: bytes | str | None = None) -> str:
    """The instance's whole user data: the launch template's parts (if any) first, then
    mnp's script, as AWS Batch appends its own. Errors: :func:`node_script`,
    :func:`template_parts`, :func:`assemble`."""
    parts = template_parts(template_user_data) if template_user_data else []
    script = node_script(boot)
    return assemble([*parts, _part('text/x-shellscript; charset="us-ascii"', script)])
