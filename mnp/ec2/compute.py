"""``computeResources`` of an EC2 or SPOT compute environment, checked as AWS Batch has them.

:func:`check_compute_resources` is pure: it returns every problem at once, each a
:class:`~mnp.errors.FieldError` naming the field (``computeResources.bidPercentage``) and the
rule, and an empty list when the block is valid. Whether the ``instanceTypes`` exist is a
separate check against a catalogue (:func:`check_against_catalogue`), so the first needs no
EC2 call.

The rules, each from the ComputeResource / ComputeResourceUpdate API reference:

* ``type``: EC2 or SPOT. FARGATE and FARGATE_SPOT are valid in AWS Batch but refused here:
  Fargate runs containers on hosts AWS manages, where mnp's node agent cannot run, and
  multi-node parallel jobs, mnp's reason to exist, "aren't supported on Fargate" either.
* ``maxvCpus`` required ("Required: Yes"); ``minvCpus`` (default 0) ≤ ``desiredvCpus`` ≤
  ``maxvCpus``, all integers ≥ 0.
* ``instanceTypes``: required for EC2 and SPOT (mnp must know what it may launch).
* ``allocationStrategy``: BEST_FIT (default), BEST_FIT_PROGRESSIVE, SPOT_CAPACITY_OPTIMIZED,
  SPOT_PRICE_CAPACITY_OPTIMIZED; the SPOT_* ones are "only available for Spot Instance
  compute resources"; "BEST_FIT isn't supported when updating a compute environment".
* ``bidPercentage``: 0–100, SPOT only (it caps the Spot price as a share of On-Demand).
* ``subnets``: required ("Required: Yes"), at least one ``subnet-…`` id.
* ``securityGroupIds``: ``sg-…`` ids; "One or more security groups must be specified, either
  in securityGroupIds or using a launch template referenced in launchTemplate."
* ``instanceRole``: "This parameter is required for Amazon EC2 instances types"; the short
  name or ARN of an instance profile.
* ``spotIamFleetRole``: an IAM role ARN; for SPOT "This role is required if the allocation
  strategy set to BEST_FIT or if the allocation strategy isn't specified."
* ``imageId`` and ``ec2Configuration[].imageIdOverride``: ``ami-…`` ids. ``ec2Configuration``:
  "One or two values can be provided", each with an ``imageType`` (ECS types; mnp runs no
  EKS); ``batchImageStatus`` is read-only.
* ``tags``: a string map, EC2's tag limits (keys 1–128 characters, not ``aws:``, values up to
  256, at most 50).
* ``launchTemplate``: "You must specify either the launch template ID or launch template name
  in the request, but not both"; ``version`` is ``$Default``, ``$Latest`` or a number;
  ``overrides`` at most ten, each the same rule plus ``targetInstanceTypes``;
  ``userdataType`` is for EKS only.
* ``updateToLatestImageVersion``: a boolean, in UpdateComputeEnvironment only (it belongs to
  ComputeResourceUpdate).
* ``scalingPolicy.minScaleDownDelayMinutes``: 20–10080, or 0 to unset.
* ``ec2KeyPair``, ``placementGroup``: names of 1–255 characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from mnp.ec2.catalog import Catalogue
from mnp.errors import FieldError
from mnp.spec.wirefields import Fields

TYPES = ("EC2", "SPOT")
REFUSED_TYPES = ("FARGATE", "FARGATE_SPOT")
STRATEGIES = (
    "BEST_FIT",
    "BEST_FIT_PROGRESSIVE",
    "SPOT_CAPACITY_OPTIMIZED",
    "SPOT_PRICE_CAPACITY_OPTIMIZED",
)
SPOT_STRATEGIES = ("SPOT_CAPACITY_OPTIMIZED", "SPOT_PRICE_CAPACITY_OPTIMIZED")
IMAGE_TYPES = ("ECS_AL2", "ECS_AL2_NVIDIA", "ECS_AL2023", "ECS_AL2023_NVIDIA")
INT32 = 2**31 - 1
CREATE_FIELDS = frozenset(
    {
        "type",
        "allocationStrategy",
        "minvCpus",
        "maxvCpus",
        "desiredvCpus",
        "instanceTypes",
        "imageId",
        "subnets",
        "securityGroupIds",
        "ec2KeyPair",
        "instanceRole",
        "tags",
        "placementGroup",
        "bidPercentage",
        "spotIamFleetRole",
        "launchTemplate",
        "ec2Configuration",
        "scalingPolicy",
    }
)
UPDATE_FIELDS = (CREATE_FIELDS - {"spotIamFleetRole"}) | {"updateToLatestImageVersion"}
_SUBNET = re.compile(r"subnet-[0-9a-f]{1,17}")
_SG = re.compile(r"sg-[0-9a-f]{1,17}")
_AMI = re.compile(r"ami-[0-9a-f]{1,17}")
_LT_ID = re.compile(r"lt-[0-9a-f]{1,17}")
_LT_NAME = re.compile(r"[a-zA-Z0-9().\-/_]{3,128}")
_LT_VERSION = re.compile(r"\$Default|\$Latest|[1-9][0-9]{0,18}")
_PROFILE = re.compile(
    r"arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]{1,128}|[\w+=,.@-]{1,128}"
)
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_TYPE_ENTRY = re.compile(r"[a-z0-9_.-]{1,64}")


def check_compute_resources(
    cr: Any, *, update: bool = False, path: str = "computeResources"
) -> list[FieldError]:
    """Every problem with ``cr``, a CreateComputeEnvironment ``computeResources`` block (or,
    with ``update``, an UpdateComputeEnvironment one: nothing is required and BEST_FIT is
    refused). Empty when valid. Pure."""
    f = Fields(cr, path)
    if not isinstance(cr, dict):
        return f.errors
    allowed = UPDATE_FIELDS if update else CREATE_FIELDS
    for key in sorted(set(cr) - allowed):
        if key == "updateToLatestImageVersion":
            f.fail(key, "only in UpdateComputeEnvironment (ComputeResourceUpdate)")
        elif key == "spotIamFleetRole":
            f.fail(key, "cannot be changed by UpdateComputeEnvironment")
        else:
            f.fail(key, f"unknown field; must be one of {', '.join(sorted(allowed))}")
    need = not update
    ce_type = _type(f, need)
    spot = ce_type == "SPOT"
    strategy = f.text("allocationStrategy", required=False, choices=STRATEGIES)
    if strategy in SPOT_STRATEGIES and ce_type == "EC2":
        f.fail("allocationStrategy", "only available for Spot Instance compute resources")
    if update and strategy == "BEST_FIT":
        f.fail("allocationStrategy", "BEST_FIT isn't supported when updating a compute environment")
    _vcpus(f, need)
    f.texts("instanceTypes", most_items=100, most=64, pattern=_TYPE_ENTRY)
    if need and _empty(f, "instanceTypes"):
        f.fail("instanceTypes", "required for EC2 and SPOT compute resources")
    bid = f.integer("bidPercentage", low=0, high=100, required=False)
    if bid is not None and ce_type == "EC2":
        f.fail("bidPercentage", "applies only to SPOT compute resources")
    f.texts("subnets", most_items=100, most=32, pattern=_SUBNET)
    if need and _empty(f, "subnets"):
        f.fail("subnets", "required: at least one subnet id")
    f.texts("securityGroupIds", most_items=100, most=32, pattern=_SG)
    template = _launch_template(f)
    if need and not template and _empty(f, "securityGroupIds"):
        f.fail(
            "securityGroupIds",
            "one or more security groups must be specified, here or in the launchTemplate",
        )
    f.text("imageId", required=False, most=32, pattern=_AMI)
    for key in ("ec2KeyPair", "placementGroup"):
        if f.body.get(key) == "":
            f.fail(key, "must be 1-255 characters")
        else:
            f.text(key, required=False, most=255)
    f.text("instanceRole", required=False, most=2048, pattern=_PROFILE)
    if need and _empty(f, "instanceRole"):
        f.fail("instanceRole", "required for Amazon EC2 instance types (EC2 and SPOT)")
    f.text("spotIamFleetRole", required=False, most=2048, pattern=_ROLE_ARN)
    if need and spot and strategy in (None, "BEST_FIT") and _empty(f, "spotIamFleetRole"):
        f.fail(
            "spotIamFleetRole", "required for SPOT when allocationStrategy is BEST_FIT or not given"
        )
    _tags(f)
    _ec2_configuration(f)
    _scaling_policy(f)
    if update:
        f.flag("updateToLatestImageVersion")
    return f.errors


def check_against_catalogue(
    cr: dict[str, Any], catalogue: Catalogue, path: str = "computeResources"
) -> list[FieldError]:
    """The ``instanceTypes`` (and launch template overrides' ``targetInstanceTypes``) that
    the catalogue does not know, with AWS Batch's message, and a mix of architectures."""
    errors: list[FieldError] = []
    types = cr.get("instanceTypes")
    if isinstance(types, list):
        errors += catalogue.check(_strings(types), f"{path}.instanceTypes")
    overrides = (cr.get("launchTemplate") or {}).get("overrides")
    if isinstance(overrides, list):
        for i, o in enumerate(overrides):
            targets = o.get("targetInstanceTypes") if isinstance(o, dict) else None
            if isinstance(targets, list):
                where = f"{path}.launchTemplate.overrides[{i}].targetInstanceTypes"
                errors += catalogue.check(_strings(targets), where)
    return errors


def _strings(values: Iterable[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str)]


def _empty(f: Fields, key: str) -> bool:
    """``key`` is absent, null, ``""`` or ``[]`` (a wrong value has its own error)."""
    return f.body.get(key) in (None, "", [])


def _type(f: Fields, required: bool) -> str | None:
    value = f.body.get("type")
    if value in REFUSED_TYPES:
        f.fail(
            "type",
            f"{value} is not supported: mnp launches its node agent on EC2 instances "
            "(use EC2 or SPOT)",
        )
        return None
    return f.text("type", required=required, choices=TYPES)


def _vcpus(f: Fields, required: bool) -> None:
    low = f.integer("minvCpus", low=0, high=INT32, required=False)
    high = f.integer("maxvCpus", low=0, high=INT32, required=required)
    want = f.integer("desiredvCpus", low=0, high=INT32, required=False)
    if low is not None and high is not None and low > high:
        f.fail("minvCpus", f"must be <= maxvCpus ({high}), got {low}")
    if want is not None:
        floor = low or 0
        if want < floor or (high is not None and want > high):
            top = "maxvCpus" if high is None else f"maxvCpus ({high})"
            f.fail("desiredvCpus", f"must be between minvCpus ({floor}) and {top}, got {want}")


def _launch_template(f: Fields) -> bool:
    """Checks ``launchTemplate``; True when one is given (even a wrong one)."""
    if f.body.get("launchTemplate") is None:
        return False
    lt = Fields(f.body["launchTemplate"], f.at("launchTemplate"), f.errors)
    known = {"launchTemplateId", "launchTemplateName", "version", "overrides", "userdataType"}
    _unknown(lt, known)
    _template_ref(lt)
    lt.text("version", required=False, most=20, pattern=_LT_VERSION)
    if lt.body.get("userdataType") is not None:
        lt.fail("userdataType", "applies only to EKS compute environments, which mnp does not run")
    overrides = lt.objects("overrides", most_items=10)
    for o in overrides:
        _unknown(o, {"launchTemplateId", "launchTemplateName", "version", "targetInstanceTypes"})
        _template_ref(o)
        o.text("version", required=False, most=20, pattern=_LT_VERSION)
        o.texts("targetInstanceTypes", most_items=10, most=64, pattern=_TYPE_ENTRY)
        if _empty(o, "targetInstanceTypes"):
            o.fail("targetInstanceTypes", "required: the types or families it applies to")
    return True


def _template_ref(lt: Fields) -> None:
    has_id = lt.body.get("launchTemplateId") is not None
    has_name = lt.body.get("launchTemplateName") is not None
    if has_id and has_name:
        lt.fail("launchTemplateId", "give launchTemplateId or launchTemplateName, not both")
    elif not has_id and not has_name and not any(e.path == lt.path for e in lt.errors):
        lt.fail("launchTemplateId", "required: launchTemplateId or launchTemplateName")
    lt.text("launchTemplateId", required=False, most=32, pattern=_LT_ID)
    lt.text("launchTemplateName", required=False, most=128, pattern=_LT_NAME)


def _unknown(f: Fields, known: set[str]) -> None:
    for key in sorted(set(f.body) - known):
        f.fail(key, f"unknown field; must be one of {', '.join(sorted(known))}")


def _tags(f: Fields) -> None:
    tags = f.body.get("tags")
    if tags is None:
        return
    if not isinstance(tags, dict):
        f.fail("tags", "must be an object of string keys to string values")
        return
    if len(tags) > 50:
        f.fail("tags", f"at most 50 tags, got {len(tags)}")
    for key, value in tags.items():
        at = f"tags[{key!r}]"
        if not 1 <= len(key) <= 128:
            f.fail(at, "tag keys must be 1-128 characters")
        elif key.lower().startswith("aws:"):
            f.fail(at, "tag keys must not start with aws: (reserved for AWS)")
        if not isinstance(value, str):
            f.fail(at, "must be a string")
        elif len(value) > 256:
            f.fail(at, "tag values must be at most 256 characters")


def _ec2_configuration(f: Fields) -> None:
    if f.body.get("ec2Configuration") is None:
        return
    items = f.body["ec2Configuration"]
    if isinstance(items, list) and not 1 <= len(items) <= 2:
        f.fail("ec2Configuration", f"one or two values can be provided, got {len(items)}")
        return
    seen: set[str] = set()
    for item in f.objects("ec2Configuration", most_items=2):
        _unknown(item, {"imageType", "imageIdOverride", "imageKubernetesVersion"})
        image_type = item.text("imageType", choices=IMAGE_TYPES)
        if image_type in seen:
            item.fail("imageType", f"{image_type} is given twice")
        seen.add(image_type or "")
        item.text("imageIdOverride", required=False, most=32, pattern=_AMI)
        if item.body.get("imageKubernetesVersion") is not None:
            item.fail("imageKubernetesVersion", "applies only to EKS compute environments")


def _scaling_policy(f: Fields) -> None:
    if f.body.get("scalingPolicy") is None:
        return
    sp = Fields(f.body["scalingPolicy"], f.at("scalingPolicy"), f.errors)
    _unknown(sp, {"minScaleDownDelayMinutes"})
    delay = sp.integer("minScaleDownDelayMinutes", low=0, high=10080, required=False)
    if delay is not None and 0 < delay < 20:
        sp.fail("minScaleDownDelayMinutes", f"must be 20-10080, or 0 to unset; got {delay}")
