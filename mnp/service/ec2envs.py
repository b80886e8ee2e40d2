"""EC2 compute environments at the service's door: which create requests make one (the head
runs with ``MNP_EC2`` and the request asks for EC2 or SPOT), their checks as AWS Batch makes
them, and updates of their vCPU bounds. Part of :class:`mnp.service.resources.ResourceOps`."""

from __future__ import annotations

from typing import Any

from mnp.build.images import image_policy
from mnp.ec2.compute import check_against_catalogue, check_compute_resources
from mnp.errors import FieldError, InvalidInput
from mnp.service.base import Context
from mnp.service.filesystems import shared_filesystem
from mnp.service.models import CreateComputeEnvironment
from mnp.spec.environments import ComputeEnvironment, ComputeEnvironmentType, State
from mnp.spec.resources import Resources

JSON = dict[str, Any]


def is_ec2(ctx: Context, req: CreateComputeEnvironment) -> bool:
    """An environment of EC2 instances: the head runs with EC2 (``MNP_EC2``) and an
    AWS-shaped MANAGED request asks for EC2 or SPOT; its ``mnp`` block, if any, may hold
    only ``sharedFilesystem`` (any other key is refused naming it: local nodes' settings
    mean nothing to instances). Without ``MNP_EC2`` such a request runs on local nodes
    (AWS's tutorials on one machine) and only its bounds are checked."""
    cr = req.computeResources
    ec2 = (
        ctx.s.config.ec2
        and req.type == "MANAGED"
        and isinstance(cr, dict)
        and cr.get("type") in ("EC2", "SPOT")
    )
    if not ec2 or "mnp" not in req.model_fields_set:
        return ec2
    local = sorted(req.mnp.model_fields_set - {"sharedFilesystem"})
    if local:
        why = "is not a setting of an EC2 environment (its mnp block may hold only "
        raise InvalidInput([FieldError(f"mnp.{k}", why + "sharedFilesystem)") for k in local])
    return True


def create_ec2(ctx: Context, req: CreateComputeEnvironment) -> JSON:
    """An EC2 environment, checked as AWS Batch checks it (every field, then the instance
    types against EC2's own DescribeInstanceTypes) before anything is made. Sized in
    vCPUs from demand (:mod:`mnp.scheduler.ec2scaling`), starting at ``desiredvCpus``."""
    cr = dict(req.computeResources or {})
    errors = check_compute_resources(cr) + _image_errors(cr)
    if not errors:
        try:
            catalogue = ctx.rt.fleet.provider("ec2").catalogue()  # type: ignore[attr-defined]
        except Exception as e:  # EC2 unreachable: refuse rather than accept blind
            raise InvalidInput(
                [FieldError("computeResources.instanceTypes", f"cannot be checked: {e}")]
            ) from None
        errors = check_against_catalogue(cr, catalogue)
    try:  # what the instances' user data mounts (mnp.ec2.userdata)
        shared = shared_filesystem(req.mnp.sharedFilesystem, req.tags, "mount")
    except InvalidInput as e:
        errors = [*errors, *e.errors]
    try:  # how its nodes run images (mnp.build.images)
        image_policy(req.tags)
    except InvalidInput as e:
        errors = [*errors, *e.errors]
    if errors:
        raise InvalidInput(errors)
    low, _ = int(cr.get("minvCpus") or 0), int(cr.get("maxvCpus") or 0)
    ce = ComputeEnvironment(
        name=req.computeEnvironmentName,
        type=ComputeEnvironmentType.MANAGED,
        state=State(req.state),
        provider="ec2",
        node_count=0,
        node_resources=Resources(0, 0, 0),
        created_at=ctx.s.clock(),
        doc=req.model_dump(exclude_none=True, exclude={"mnp"}),
        first_address="",
        shared_filesystem=shared,
    )
    ce.desired_vcpus = max(low, int(cr.get("desiredvCpus") or 0))
    with ctx.s.store.transaction():
        ctx.s.store.save_ce(ce)
    ctx.s.ces[ce.name] = ce
    ctx.s.on_wake()
    return {"computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn}


def update_ec2(ce: ComputeEnvironment, given: JSON) -> None:
    """``minvCpus``/``maxvCpus``/``desiredvCpus`` of an EC2 environment, as AWS: checked
    against the stored ones first; a lower ``desiredvCpus`` than running is not forced
    (idle instances are scaled in), a lower ``maxvCpus`` drains the idlest beyond it."""
    errors = check_compute_resources(given, update=True)
    merged = {**(ce.doc.get("computeResources") or {}), **given}
    low, high = merged.get("minvCpus") or 0, merged.get("maxvCpus") or 0
    if not errors and isinstance(low, int) and isinstance(high, int) and low > high:
        why = f"must be <= maxvCpus ({high}), got {low}"
        errors.append(FieldError("computeResources.minvCpus", why))
    want = given.get("desiredvCpus")
    if not errors and isinstance(want, int) and not low <= want <= high:
        why = f"must be between minvCpus ({low}) and maxvCpus ({high}), got {want}"
        errors.append(FieldError("computeResources.desiredvCpus", why))
    if errors:
        raise InvalidInput(errors)
    if isinstance(want, int):
        ce.desired_vcpus = want


def _image_errors(cr: JSON) -> list[FieldError]:
    """AWS Batch falls back to its ECS-optimized AMI; mnp cannot: an instance must run mnp's
    agent (Python >= 3.11 as ``python3``, and ``curl``), which that image lacks. So an image is
    required: ``imageId``, an ``ec2Configuration[].imageIdOverride`` or a launch template
    (whose ``ImageId`` is read at launch)."""
    configs = cr.get("ec2Configuration")
    overridden = isinstance(configs, list) and any(
        isinstance(c, dict) and c.get("imageIdOverride") for c in configs
    )
    if cr.get("imageId") or overridden or cr.get("launchTemplate"):
        return []
    why = (
        "required by mnp (AWS Batch's default ECS-optimized AMI has no Python 3.11 for mnp's "
        "agent): give an AMI with python3 >= 3.11 and curl, here, in "
        "ec2Configuration[].imageIdOverride or in the launchTemplate"
    )
    return [FieldError("computeResources.imageId", why)]
