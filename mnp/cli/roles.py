"""``mnp roles create|list|delete``: what running jobs may do with their own credentials.

A job acts as its submitter, limited by the role its definition's ``jobRoleArn`` names (the
last part of the ARN); without one it has the default role (:mod:`mnp.service.roles`).
"""

from __future__ import annotations

import click

from mnp.cli.state import State, json_option, pass_state, print_json


@click.group("roles")
def roles_group() -> None:
    """Manage the roles jobs act under (admins create and delete them)."""


@roles_group.command("create")
@click.argument("name")
@click.option("--allow", "actions", multiple=True, required=True,
              help="An action: batch:SubmitJob, batch:Describe*, logs:GetLogEvents, mnp:requeueJob "
                   "(repeat, or separate with commas).")  # fmt: skip
@click.option("--queue", "queues", multiple=True, help="A queue name or glob (default: any).")
@click.option("--definition", "definitions", multiple=True,
              help="A job definition name or glob (default: any).")  # fmt: skip
@json_option
@pass_state
def roles_create(
    state: State, name: str, actions: tuple[str, ...], queues: tuple[str, ...],
    definitions: tuple[str, ...], as_json: bool,
) -> None:  # fmt: skip
    """Create role NAME: one statement allowing ACTIONS on QUEUEs and DEFINITIONs."""
    statement: dict[str, list[str]] = {"actions": _split(actions)}
    if queues:
        statement["queues"] = _split(queues)
    if definitions:
        statement["definitions"] = _split(definitions)
    made = state.client().call("createRole", {"roleName": name, "statements": [statement]})
    if as_json:
        print_json(made)
    else:
        click.echo(f"created role {name}: jobs with jobRoleArn .../role/{name} may "
                   f"{', '.join(statement['actions'])}")  # fmt: skip


@roles_group.command("list")
@json_option
@pass_state
def roles_list(state: State, as_json: bool) -> None:
    """Every role (the default one first) and what it allows."""
    roles = state.client().call("listRoles", {}).get("roles", [])
    if as_json:
        print_json(roles)
        return
    for role in roles:
        for st in role.get("statements", []):
            click.echo(
                f"{role.get('roleName')}\t{','.join(st.get('actions', []))}\t"
                f"queues={','.join(st.get('queues', ['*']))}\t"
                f"definitions={','.join(st.get('definitions', ['*']))}"
            )


@roles_group.command("delete")
@click.argument("name")
@pass_state
def roles_delete(state: State, name: str) -> None:
    """Delete role NAME (its jobs then act under the default role)."""
    state.client().call("deleteRole", {"roleName": name})
    click.echo(f"deleted role {name}")


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]
