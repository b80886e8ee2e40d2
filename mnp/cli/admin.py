"""``mnp queue create|update|delete`` and ``mnp ce create|update|delete``: an admin's
partitions without the AWS CLI.

A Slurm partition is a job queue (``sbatch -p NAME``) over compute environments; these verbs
call the native API's createJobQueue/updateJobQueue/deleteJobQueue and
createComputeEnvironment/updateComputeEnvironment/deleteComputeEnvironment, so every rule is
the head's (an unknown environment, a name taken, a queue still holding jobs: ``error: …``,
exit 1). A fixed environment (``--nodes``) has local nodes of the given size from the start;
an elastic one (``--min-vcpus``/``--max-vcpus``) is scaled from demand as AWS scales it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from mnp.build.images import IMAGE_POLICY_TAG, IMAGE_TAG_PREFIX, POLICIES
from mnp.cli.state import State, json_option, pass_state, print_json

JSON = dict[str, Any]
STATES = click.Choice(["ENABLED", "DISABLED"], case_sensitive=False)


def _order(ces: Sequence[str]) -> list[JSON]:
    """``computeEnvironmentOrder``: the environments in the order given."""
    return [{"order": i, "computeEnvironment": ce} for i, ce in enumerate(ces, start=1)]


def _done(answer: JSON, as_json: bool, text: str) -> None:
    print_json(answer) if as_json else click.echo(text)


# -- job queues (partitions) -------------------------------------------------------------------


@click.group("queue")
def queue_group() -> None:
    """Create, change and delete job queues (Slurm partitions: sbatch -p NAME)."""


@queue_group.command("create")
@click.argument("name")
@click.option(
    "--ce",
    "ces",
    multiple=True,
    required=True,
    metavar="CE",
    help="A compute environment, in order of preference (repeat for up to 3).",
)
@click.option(
    "--priority",
    type=click.IntRange(0, 1000),
    default=1,
    show_default=True,
    help="Higher runs first where queues share environments.",
)
@click.option("--state", "queue_state", type=STATES, default="ENABLED", show_default=True)
@json_option
@pass_state
def queue_create(
    state: State, name: str, ces: tuple[str, ...], priority: int, queue_state: str, as_json: bool
) -> None:
    """Create job queue NAME over the compute environments given."""
    body = {
        "jobQueueName": name,
        "priority": priority,
        "state": queue_state.upper(),
        "computeEnvironmentOrder": _order(ces),
    }
    answer = state.client().call("createJobQueue", body)
    _done(answer, as_json, f"created job queue {name} ({', '.join(ces)})")


@queue_group.command("update")
@click.argument("name")
@click.option(
    "--ce",
    "ces",
    multiple=True,
    metavar="CE",
    help="Replace the compute environments (repeat for up to 3).",
)
@click.option("--priority", type=click.IntRange(0, 1000), default=None)
@click.option("--state", "queue_state", type=STATES, default=None)
@json_option
@pass_state
def queue_update(
    state: State,
    name: str,
    ces: tuple[str, ...],
    priority: int | None,
    queue_state: str | None,
    as_json: bool,
) -> None:
    """Change job queue NAME: its environments, priority or state."""
    body: JSON = {"jobQueue": name}
    if ces:
        body["computeEnvironmentOrder"] = _order(ces)
    if priority is not None:
        body["priority"] = priority
    if queue_state is not None:
        body["state"] = queue_state.upper()
    if len(body) == 1:
        raise click.UsageError("nothing to change: give --ce, --priority or --state")
    answer = state.client().call("updateJobQueue", body)
    _done(answer, as_json, f"updated job queue {name}")


@queue_group.command("delete")
@click.argument("name")
@json_option
@pass_state
def queue_delete(state: State, name: str, as_json: bool) -> None:
    """Delete job queue NAME (the head says what stops it)."""
    answer = state.client().call("deleteJobQueue", {"jobQueue": name})
    _done(answer, as_json, f"deleting job queue {name}")


# -- compute environments ----------------------------------------------------------------------


@click.group("ce")
def ce_group() -> None:
    """Create, change and delete compute environments of local nodes (a partition's nodes)."""


def _check_shape(
    nodes: int | None,
    vcpus: int | None,
    memory_mib: int | None,
    min_vcpus: int | None,
    max_vcpus: int | None,
) -> None:
    if nodes is None and (vcpus is not None or memory_mib is not None):
        raise click.UsageError("--vcpus and --memory-mib size the nodes of --nodes N")
    if nodes is not None and (min_vcpus is not None or max_vcpus is not None):
        raise click.UsageError(
            "give --nodes (a fixed size) or --min-vcpus/--max-vcpus (elastic), not both"
        )


@ce_group.command("create")
@click.argument("name")
@click.option(
    "--nodes",
    type=click.IntRange(0, 64),
    default=None,
    help="A fixed number of local nodes, there from the start.",
)
@click.option("--vcpus", type=click.IntRange(min=1), default=None, help="vCPUs per node.")
@click.option("--memory-mib", type=click.IntRange(min=4), default=None, help="Memory per node.")
@click.option(
    "--min-vcpus",
    type=click.IntRange(min=0),
    default=None,
    help="Elastic: vCPUs kept when idle (0).",
)
@click.option(
    "--max-vcpus",
    type=click.IntRange(min=0),
    default=None,
    help="Elastic: the most vCPUs demand may start.",
)
@click.option(
    "--image-policy",
    type=click.Choice(POLICIES),
    default=None,
    help="How its nodes run images: docker (default), process (never an engine), auto.",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="IMAGE=KEY=VALUE;…",
    help="What stands in for IMAGE (or a prefix, or *) when run as a process: "
    "entrypoint=…;command=…;path=…;dir=… (repeatable).",
)
@click.option("--state", "ce_state", type=STATES, default="ENABLED", show_default=True)
@json_option
@pass_state
def ce_create(
    state: State,
    name: str,
    nodes: int | None,
    vcpus: int | None,
    memory_mib: int | None,
    min_vcpus: int | None,
    max_vcpus: int | None,
    image_policy: str | None,
    images: tuple[str, ...],
    ce_state: str,
    as_json: bool,
) -> None:
    """Create compute environment NAME: --nodes N [--vcpus V --memory-mib M] (fixed), or
    --min-vcpus/--max-vcpus (elastic, the head's node size). --image-policy and --image
    become its mnp:imagePolicy and mnp:image:<IMAGE> tags (docs/images.md)."""
    _check_shape(nodes, vcpus, memory_mib, min_vcpus, max_vcpus)
    body: JSON = {"computeEnvironmentName": name, "type": "MANAGED", "state": ce_state.upper()}
    tags = _image_tags(image_policy, images)
    if tags:
        body["tags"] = tags
    if nodes is not None:
        shape = {"nodes": nodes, "vcpus": vcpus, "memoryMiB": memory_mib}
        body["mnp"] = {k: v for k, v in shape.items() if v is not None}
    else:
        resources: JSON = {"type": "EC2", "subnets": [], "minvCpus": min_vcpus or 0}
        if max_vcpus is None:
            raise click.UsageError("give --nodes N, or --max-vcpus for an elastic environment")
        body["computeResources"] = resources | {"maxvCpus": max_vcpus}
    answer = state.client().call("createComputeEnvironment", body)
    _done(answer, as_json, f"created compute environment {name}")


def _image_tags(policy: str | None, images: tuple[str, ...]) -> dict[str, str]:
    """The tags ``--image-policy`` and ``--image IMAGE=MAPPING`` stand for (the head checks
    their values, as it checks tags given any other way)."""
    tags = {} if policy is None else {IMAGE_POLICY_TAG: policy}
    for item in images:
        image, eq, mapping = item.partition("=")
        if not eq or not image:
            raise click.BadParameter(f"{item!r} is not IMAGE=MAPPING", param_hint="--image")
        tags[f"{IMAGE_TAG_PREFIX}{image}"] = mapping
    return tags


@ce_group.command("update")
@click.argument("name")
@click.option("--nodes", type=click.IntRange(0, 64), default=None, help="A fixed size.")
@click.option("--min-vcpus", type=click.IntRange(min=0), default=None)
@click.option("--max-vcpus", type=click.IntRange(min=0), default=None)
@click.option("--state", "ce_state", type=STATES, default=None)
@json_option
@pass_state
def ce_update(
    state: State,
    name: str,
    nodes: int | None,
    min_vcpus: int | None,
    max_vcpus: int | None,
    ce_state: str | None,
    as_json: bool,
) -> None:
    """Change compute environment NAME: its size (nodes, or vCPU bounds) or state. A node's
    size is fixed when the environment is made."""
    _check_shape(nodes, None, None, min_vcpus, max_vcpus)
    body: JSON = {"computeEnvironment": name}
    if nodes is not None:
        body["mnp"] = {"nodes": nodes}
    bounds = {"minvCpus": min_vcpus, "maxvCpus": max_vcpus}
    if any(v is not None for v in bounds.values()):
        body["computeResources"] = {k: v for k, v in bounds.items() if v is not None}
    if ce_state is not None:
        body["state"] = ce_state.upper()
    if len(body) == 1:
        raise click.UsageError(
            "nothing to change: give --nodes, --min-vcpus/--max-vcpus or --state"
        )
    answer = state.client().call("updateComputeEnvironment", body)
    _done(answer, as_json, f"updated compute environment {name}")


@ce_group.command("delete")
@click.argument("name")
@json_option
@pass_state
def ce_delete(state: State, name: str, as_json: bool) -> None:
    """Delete compute environment NAME (disable it and its queues' use of it first, as AWS
    asks; the head says what stops it)."""
    answer = state.client().call("deleteComputeEnvironment", {"computeEnvironment": name})
    _done(answer, as_json, f"deleting compute environment {name}")
