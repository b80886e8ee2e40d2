"""``mnp env``: the shell lines that point AWS tooling at the running head node.

After ``eval "$(mnp env)"``, plain ``aws batch …``, ``aws logs …`` and ``boto3.client(…)``
reach the head node with no flags: botocore reads the service-specific endpoint variables
(``AWS_ENDPOINT_URL_<service id>``: ``BATCH``, ``CLOUDWATCH_LOGS`` — the Logs service id is
"CloudWatch Logs", so ``AWS_ENDPOINT_URL_LOGS`` would be ignored) and the access key from
``<home>/credentials`` (which the head node creates when it first starts). A session token
left in the shell would be sent along with mnp's key, so it is unset.

An aws CLI older than the endpoint variables (v2 before 2.13, v1 before 1.29) ignores them
and would reach AWS itself with mnp's key. ``mnp env`` asks the installed one its version
(``aws --version``) and, when it is that old, says so on stderr and also prints a shell
function ``aws`` that passes ``--endpoint-url`` on every call: one URL serves Batch and Logs,
a function (unlike an alias) works in scripts and in sh, bash and zsh alike, and
``command aws`` inside it still finds the real one. boto3 is not asked (a script's own
botocore may be newer than the CLI's); only the CLI gets the function.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import click

from mnp.api.aws.credentials import credentials_path, from_environment, pick, read_file
from mnp.cli.head import running_head
from mnp.cli.state import State
from mnp.errors import MnpError

DEFAULT_REGION = "us-east-1"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_BATCH", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
FIRST_READING = {1: (1, 29), 2: (2, 13)}
"""The first aws CLI release of each major version that reads ``AWS_ENDPOINT_URL*``."""
VERSION_SECONDS = 10.0
_VERSION = re.compile(r"aws-cli/(\d+)\.(\d+)(?:\.(\d+))?")


def aws_cli_version() -> tuple[int, int, int] | None:
    """The installed aws CLI's version from ``aws --version`` (``aws-cli/2.9.1 Python/…``;
    v1 printed it on stderr); None when there is none or it does not say."""
    aws = shutil.which("aws")
    if aws is None:
        return None
    try:
        done = subprocess.run(
            [aws, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(f"{done.stdout}\n{done.stderr}")
    if m is None:
        return None
    return int(m[1]), int(m[2]), int(m[3] or 0)


def reads_endpoint_variables(version: tuple[int, int, int]) -> bool:
    """Whether that aws CLI version reads ``AWS_ENDPOINT_URL*`` (a later major one does)."""
    first = FIRST_READING.get(version[0])
    return version[:2] >= first if first is not None else version[0] > max(FIRST_READING)


def endpoint_function(url: str) -> str:
    """A shell function ``aws`` that gives every call ``--endpoint-url`` (sh, bash, zsh)."""
    return f'aws() {{ command aws --endpoint-url {shlex.quote(url)} "$@"; }}'


def env_lines(url: str, key_id: str, secret: str, region: str = DEFAULT_REGION) -> list[str]:
    """``export`` and ``unset`` lines for sh, bash and zsh; every value quoted for sh."""
    values = [(name, url) for name in ENDPOINT_VARIABLES] + [
        ("AWS_ACCESS_KEY_ID", key_id),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_DEFAULT_REGION", region),
        ("AWS_REGION", region),
    ]
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values]
    lines.append(f"unset {' '.join(UNSET)}")
    return lines


@click.command("env")
@click.option("--profile", help="Profile of <home>/credentials (default: default, else the first).")
@click.option("--region", default=DEFAULT_REGION, show_default=True, help="AWS_DEFAULT_REGION.")
@click.pass_obj
def env_command(state: State, profile: str | None, region: str) -> None:
    """Print shell lines pointing the aws CLI and boto3 at this head node.

    Use as: eval "$(mnp env)". The URL is the running head node's (or --url); the key is
    from <home>/credentials, else from MNP_AWS_ACCESS_KEY_ID / MNP_AWS_SECRET_ACCESS_KEY.
    """
    url = state.url
    if url is None:
        info = running_head(state.home)
        if info is None:
            raise MnpError(f"no head node is running for {state.home} (start one: mnp up)")
        url = info.url
    path = credentials_path(state.home)
    creds = pick(read_file(path), profile)
    if creds is None and profile is None:
        creds = from_environment()
    if creds is None:
        which = f"no profile {profile!r} in {path}" if profile else f"no access key in {path}"
        raise MnpError(f"{which}; the head node writes one when it starts")
    url = url.rstrip("/")
    for line in env_lines(url, creds.access_key_id, creds.secret_access_key, region):
        click.echo(line)
    version = aws_cli_version()
    if version is not None and not reads_endpoint_variables(version):
        shown = ".".join(map(str, version))
        first = ".".join(map(str, FIRST_READING.get(version[0], (0, 0))))
        click.echo(
            f"mnp env: warning: aws CLI {shown} ignores AWS_ENDPOINT_URL_* (read from "
            f"{first} on) and would call AWS itself; defining an aws function that passes "
            f"--endpoint-url {url} instead (or upgrade the aws CLI)",
            err=True,
        )
        click.echo(endpoint_function(url))
