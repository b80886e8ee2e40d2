"""``mnp env``: the shell lines that point AWS tooling at the running head node.

After ``eval "$(mnp env)"``, plain ``aws batch …``, ``aws logs …`` and ``boto3.client(…)``
reach the head node with no flags: botocore reads the service-specific endpoint variables
(``AWS_ENDPOINT_URL_<service id>``: ``BATCH``, ``CLOUDWATCH_LOGS`` — the Logs service id is
"CloudWatch Logs", so ``AWS_ENDPOINT_URL_LOGS`` would be ignored) and the access key from
``<home>/credentials`` (which the head node creates when it first starts). A session token
left in the shell would be sent along with mnp's key, so it is unset.
"""

from __future__ import annotations

import shlex

import click

from mnp.api.aws.credentials import credentials_path, from_environment, pick, read_file
from mnp.cli.head import running_head
from mnp.cli.state import State
from mnp.errors import MnpError

DEFAULT_REGION = "us-east-1"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_BATCH", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS")
UNSET = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


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
    for line in env_lines(url.rstrip("/"), creds.access_key_id, creds.secret_access_key, region):
        click.echo(line)
