"""``mnp users add|list|remove`` and ``mnp whoami``: the head's users.

``mnp users add NAME`` run as root for a local account NAME also writes NAME's client files
(``~NAME/.mnp/client.json`` and ``~NAME/.mnp/aws-credentials``, owned by NAME, 0600 in a 0700
folder: :func:`mnp.head.install_client_files`) and says where; otherwise it prints the token
and the AWS key, which the head shows this once only.
"""

from __future__ import annotations

import click

from mnp.cli.state import State, json_option, pass_state, print_json


@click.group("users")
def users_group() -> None:
    """Manage who may use this head node (admins add and remove users)."""


@users_group.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="An admin may do everything, as the owner.")
@json_option
@pass_state
def users_add(state: State, name: str, admin: bool, as_json: bool) -> None:
    """Create user NAME and hand out its token and AWS key."""
    from mnp.head import install_client_files  # root's `mnp users add` writes NAME's files

    client = state.client()
    made = client.create_user(name, admin=admin)
    written = install_client_files(
        name, client.url, made["token"], made["awsAccessKeyId"], made["awsSecretAccessKey"]
    )
    if as_json:
        print_json({**made, "written": [str(p) for p in written]})
        return
    click.echo(f"created {made['role']} {name}")
    if written:
        for path in written:
            click.echo(f"wrote {path}")
        return
    click.echo("shown this once only; keep them private:")
    click.echo(f"  MNP_URL={client.url}")
    click.echo(f"  MNP_TOKEN={made['token']}")
    click.echo(f"  aws_access_key_id = {made['awsAccessKeyId']}")
    click.echo(f"  aws_secret_access_key = {made['awsSecretAccessKey']}")


@users_group.command("list")
@json_option
@pass_state
def users_list(state: State, as_json: bool) -> None:
    """List the head's identities (no secrets)."""
    items = state.client().users()
    if as_json:
        print_json(items)
        return
    for u in items:
        suffix = " (owner)" if u.get("owner") else ""
        click.echo(f"{u['name']:<33} {u['role']}{suffix}")


@users_group.command("remove")
@click.argument("name")
@pass_state
def users_remove(state: State, name: str) -> None:
    """Delete user NAME: its token and keys stop working at once."""
    state.client().delete_user(name)
    click.echo(f"removed {name}")


@click.command("whoami")
@json_option
@pass_state
def whoami_command(state: State, as_json: bool) -> None:
    """Who this client is to the head node, and its role."""
    me = state.client().whoami()
    if as_json:
        print_json(me)
    else:
        click.echo(f"{me['name']} ({me['role']}{', owner' if me.get('owner') else ''})")
