"""A compute environment's launch template merged with what mnp sets, as AWS Batch merges it.

AWS Batch never launches from the user's template as it is: it makes its own from the
template's settings and the compute environment's. The same rules here:

- the environment wins over the template for the key pair (``ec2KeyPair``), the AMI (see
  :func:`image_for`), the security groups (``securityGroupIds``) and the subnet;
- the template's instance type, instance profile, Spot market options, API-termination
  protection and network-interface subnets are ignored (:data:`IGNORED`): the environment's
  ``instanceTypes``, ``instanceRole``, ``type`` and ``subnets`` decide, and mnp controls the
  instance's lifecycle;
- EC2 tags are merged: the template's, then the environment's ``tags``, then mnp's own
  (``mnp:cluster``, ``mnp:ce``, ``mnp:node``), a later key winning;
- the template's user data must be MIME multi-part (or a plain script, wrapped); mnp's part
  is appended (:mod:`mnp.ec2.userdata`).

Everything else of the template that RunInstances takes as it is (:data:`COPIED`) is kept;
what it would refuse (a response-only field, attribute-based instance requirements) is not.
Pure: the caller fetches the template data (``DescribeLaunchTemplateVersions``).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping, Sequence
from typing import Any

from mnp.ec2.userdata import NodeBoot, assemble, template_parts, user_data
from mnp.errors import InvalidInput

COPIED = frozenset({
    "BlockDeviceMappings", "CapacityReservationSpecification", "CpuOptions",
    "CreditSpecification", "DisableApiStop", "EbsOptimized", "ElasticGpuSpecifications",
    "ElasticInferenceAccelerators", "EnclaveOptions", "HibernationOptions",
    "InstanceInitiatedShutdownBehavior", "KernelId", "LicenseSpecifications",
    "MaintenanceOptions", "Monitoring", "NetworkPerformanceOptions",
    "PrivateDnsNameOptions", "RamDiskId",
})  # fmt: skip
"""LaunchTemplateData fields RunInstances takes unchanged."""
IGNORED = {
    "InstanceType": "computeResources.instanceTypes decide",
    "IamInstanceProfile": "computeResources.instanceRole decides",
    "InstanceMarketOptions": "computeResources.type (EC2 | SPOT) decides",
    "DisableApiTermination": "mnp controls the instance's lifecycle",
    "InstanceRequirements": "mnp picks the instance type",
}
"""Template fields dropped, and why (as AWS Batch documents for its own merge)."""
SPOT_OPTIONS = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
MNP_TAGS = ("mnp:cluster", "mnp:ce", "mnp:node")


def template_spec_for(
    launch_template: Mapping[str, Any] | None, instance_type: str
) -> tuple[dict[str, str] | None, bool]:
    """Which template an instance of ``instance_type`` starts from: the first of the
    environment's ``launchTemplate.overrides`` whose ``targetInstanceTypes`` holds the type
    or its family (``c5n`` for ``c5n.18xlarge``), else the template itself. Returns
    (``{"LaunchTemplateId" | "LaunchTemplateName", "Version"}`` for
    DescribeLaunchTemplateVersions or None without a template, whether it is an override)."""
    if not launch_template:
        return None, False
    family = instance_type.split(".", 1)[0]
    for override in launch_template.get("overrides") or []:
        targets = override.get("targetInstanceTypes") or []
        if instance_type in targets or family in targets:
            return _spec(override), True
    return _spec(launch_template), False


def _spec(d: Mapping[str, Any]) -> dict[str, str]:
    out = {"Version": str(d.get("version") or "$Default")}
    if d.get("launchTemplateId"):
        out["LaunchTemplateId"] = str(d["launchTemplateId"])
    elif d.get("launchTemplateName"):
        out["LaunchTemplateName"] = str(d["launchTemplateName"])
    else:
        raise InvalidInput("launchTemplate: launchTemplateId or launchTemplateName is required")
    return out


def _gpu_family(instance_type: str) -> bool:
    return instance_type[:1] in ("p", "g")  # p3, p4d, p5, g4dn, g5, g6 …


def image_for(
    compute_resources: Mapping[str, Any],
    instance_type: str,
    template_data: Mapping[str, Any] | None,
    from_override: bool = False,
) -> str:
    """The AMI, in AWS Batch's order: an override template's ``ImageId``; the environment's
    ``imageId``; the ``ec2Configuration`` entry for the instance's kind (an ``…NVIDIA``
    ``imageType`` for GPU families, another for the rest) with an ``imageIdOverride``; the
    template's ``ImageId``. :class:`InvalidInput` when none is set (mnp has no default)."""
    template_image = (template_data or {}).get("ImageId")
    if from_override and template_image:
        return str(template_image)
    if compute_resources.get("imageId"):
        return str(compute_resources["imageId"])
    gpu = _gpu_family(instance_type)
    for entry in compute_resources.get("ec2Configuration") or []:
        nvidia = "NVIDIA" in str(entry.get("imageType", "")).upper()
        if nvidia == gpu and entry.get("imageIdOverride"):
            return str(entry["imageIdOverride"])
    if template_image:
        return str(template_image)
    raise InvalidInput(
        "computeResources: no AMI for "
        f"{instance_type}: set imageId, ec2Configuration[].imageIdOverride or the launch "
        "template's ImageId"
    )


def _template_user_data(template_data: Mapping[str, Any]) -> bytes | None:
    encoded = template_data.get("UserData")
    if not encoded:
        return None
    try:
        return base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("launchTemplate userData: not base64") from None


def _tags(
    template_data: Mapping[str, Any], ce_tags: Mapping[str, str], mnp_tags: Mapping[str, str]
) -> list[dict[str, Any]]:
    """TagSpecifications: the template's, its instance tags merged with the environment's
    and mnp's (later wins)."""
    specs = [copy.deepcopy(dict(s)) for s in template_data.get("TagSpecifications") or []]
    merged: dict[str, str] = {}
    for spec in specs:
        if spec.get("ResourceType") == "instance":
            merged.update({t["Key"]: t["Value"] for t in spec.get("Tags") or []})
    merged.update(ce_tags)
    merged.update(mnp_tags)
    instance = {
        "ResourceType": "instance",
        "Tags": [{"Key": k, "Value": v} for k, v in merged.items()],
    }
    out = [s for s in specs if s.get("ResourceType") != "instance"]
    return [instance, *out]


def _network(
    params: dict[str, Any],
    template_data: Mapping[str, Any],
    subnet: str | None,
    groups: Sequence[str],
) -> None:
    """Subnet and security groups: on the template's network interfaces when it has some
    (RunInstances refuses them beside instance-level ones), else on the instance."""
    interfaces = [copy.deepcopy(dict(i)) for i in template_data.get("NetworkInterfaces") or []]
    if interfaces:
        for interface in interfaces:
            if subnet:
                interface["SubnetId"] = subnet
            if groups:
                interface["Groups"] = list(groups)
        params["NetworkInterfaces"] = interfaces
        return
    if subnet:
        params["SubnetId"] = subnet
    if groups:
        params["SecurityGroupIds"] = list(groups)
    else:
        for key in ("SecurityGroupIds", "SecurityGroups"):
            if template_data.get(key):
                params[key] = list(template_data[key])


def run_instances_params(
    *,
    compute_resources: Mapping[str, Any],
    template_data: Mapping[str, Any] | None,
    instance_type: str,
    count: int,
    cluster: str,
    ce_name: str,
    boot: NodeBoot | None,
    from_override: bool = False,
    subnet: str | None = None,
    client_token: str | None = None,
    max_price: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of boto3's ``ec2.run_instances`` for ``count`` instances of
    ``instance_type`` (``MinCount = MaxCount = count``): the template data (a
    ``LaunchTemplateData`` as DescribeLaunchTemplateVersions answers it, or None) merged
    with the environment's ``computeResources`` (module docstring).

    ``boot`` is one node's (its id tags the instance, its join token is in the user data),
    so with it ``count`` must be 1; without it the instances get no mnp user data (only the
    template's, still required to be MIME or a script). ``UserData`` is the text itself:
    boto3 base64-encodes it for RunInstances. ``subnet`` must be one of the environment's
    ``subnets`` (default: its first). ``client_token`` makes a retried call harmless
    (RunInstances' idempotency token); ``max_price`` caps a Spot price (the caller's
    ``bidPercentage`` of the on-demand price). :class:`InvalidInput` on anything that
    cannot launch, with the field it names."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InvalidInput("count: must be a positive integer")
    if boot is not None and count != 1:
        raise InvalidInput("count: must be 1 with a node's boot data (it is one node's)")
    data: Mapping[str, Any] = template_data or {}
    metadata = dict(data.get("MetadataOptions") or {})
    metadata.pop("State", None)  # DescribeLaunchTemplateVersions only
    if metadata.get("HttpEndpoint") == "disabled":
        raise InvalidInput(
            "launchTemplate MetadataOptions.HttpEndpoint: disabled, but mnp's nodes read "
            "their address and Spot notices from the instance metadata service"
        )
    params: dict[str, Any] = {key: copy.deepcopy(data[key]) for key in sorted(COPIED & set(data))}
    params.update(
        ImageId=image_for(compute_resources, instance_type, data, from_override),
        InstanceType=instance_type,
        MinCount=count,
        MaxCount=count,
    )
    if metadata:
        params["MetadataOptions"] = metadata
    subnets = [str(s) for s in compute_resources.get("subnets") or []]
    if subnet is not None and subnet not in subnets:
        raise InvalidInput(f"subnet: {subnet} is not one of computeResources.subnets")
    _network(
        params, data, subnet or (subnets[0] if subnets else None),
        [str(g) for g in compute_resources.get("securityGroupIds") or []],
    )  # fmt: skip
    key_pair = compute_resources.get("ec2KeyPair") or data.get("KeyName")
    if key_pair:
        params["KeyName"] = str(key_pair)
    role = compute_resources.get("instanceRole")
    if role:
        params["IamInstanceProfile"] = {
            "Arn" if str(role).startswith("arn:") else "Name": str(role)
        }
    placement = {
        k: v
        for k, v in dict(data.get("Placement") or {}).items()
        if not (k == "AvailabilityZone" and (subnets or subnet))  # the subnet decides the AZ
    }
    if compute_resources.get("placementGroup"):
        placement.pop("GroupId", None)
        placement["GroupName"] = str(compute_resources["placementGroup"])
    if placement:
        params["Placement"] = placement
    if compute_resources.get("type") == "SPOT":
        spot: dict[str, str] = dict(SPOT_OPTIONS)
        if max_price is not None:
            spot["MaxPrice"] = max_price
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
    mnp_tags = {"mnp:cluster": cluster, "mnp:ce": ce_name}
    if boot is not None:
        mnp_tags["mnp:node"] = boot.node_id
    ce_tags = {str(k): str(v) for k, v in (compute_resources.get("tags") or {}).items()}
    params["TagSpecifications"] = _tags(data, ce_tags, mnp_tags)
    own = _template_user_data(data)
    if boot is not None:
        params["UserData"] = user_data(boot, own)
    elif own is not None:
        params["UserData"] = assemble(template_parts(own))
    if client_token is not None:
        params["ClientToken"] = client_token
    return params
