"""The EC2 provider: one instance per node of an EC2 or SPOT compute environment, through boto3.

Where it talks to: boto3's own configuration and nothing of mnp's, so real AWS needs only
credentials and a region. The region is the ``region`` argument, else boto3's (``$AWS_REGION``
/ ``$AWS_DEFAULT_REGION`` / the profile); the endpoint is boto3's (``$AWS_ENDPOINT_URL_EC2``,
``$AWS_ENDPOINT_URL``: how the tests point it at a moto server); credentials come from
boto3's chain. boto3 is the ``ec2`` extra, imported only when this provider is made.

What it tags: every instance carries ``mnp:cluster`` (this head's cluster id, see
:func:`cluster_id`), ``mnp:ce`` and ``mnp:node`` (the node id) besides the environment's
``tags``. Those tags are the whole truth: :meth:`Ec2Provider.list` answers from
DescribeInstances alone, so a restarted head, or another provider object for the same home,
sees the same nodes.

Errors: a request that fails has ``LaunchOutcome.error`` starting with the AWS error code
(``InsufficientInstanceCapacity: …``; mnp's own refusals of a request use
``InvalidParameterValue``) and ``LaunchOutcome.retryable`` from :func:`retryable`. boto3
retries throttled calls itself (its ``standard`` retry mode) before one is reported.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import os
import secrets
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from mnp.config import PRIVATE_FILE_MODE
from mnp.ec2.catalog import Catalogue, catalogue_from_ec2
from mnp.ec2.prices import PriceTable, load_prices
from mnp.ec2.template import run_instances_params, template_spec_for
from mnp.errors import InvalidInput, ProviderError
from mnp.providers import Instance, LaunchOutcome, LaunchRequest, Provider

log = logging.getLogger(__name__)

CLUSTER_FILE = "ec2-cluster-id"
"""``<home>/ec2-cluster-id``: the value of this head's ``mnp:cluster`` tag."""
LIVE_STATES = ("pending", "running")
"""The states of an instance that runs (or is about to run) its node: what :meth:`list` shows.
A stopping or stopped instance runs no agent, so its node is not listed (the head loses it)."""
OWNED_STATES = (*LIVE_STATES, "stopping", "stopped")
"""The states of an instance that still exists for its node: a launch of the node does not
start another, a terminate ends it."""
FILTER_VALUES = 200
"""Node ids per ``tag:mnp:node`` filter of one DescribeInstances (EC2's limit on values)."""
TERMINATE_BATCH = 1000
"""Instance ids per TerminateInstances call."""
MNP_REFUSED = "InvalidParameterValue"
"""The code of a request mnp refuses before asking EC2 (no instance type, no boot data, a
template that cannot be merged)."""

RETRYABLE_CODES = frozenset({
    # capacity: the same request may be placed later, or in another AZ
    "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientCapacity",
    "InsufficientReservedInstanceCapacity", "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow", "MaxSpotInstanceCountExceeded",
    # limits: they free up as the account's instances end
    "InstanceLimitExceeded", "VcpuLimitExceeded", "PendingVerification",
    # throttling and faults on AWS's side
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled",
    "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable", "RequestTimeout",
})  # fmt: skip
"""AWS error codes after which the same launch may succeed later without any change."""
RETRYABLE_BOTOCORE = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
    "ConnectionClosedError", "ConnectionError", "HTTPClientError",
})  # fmt: skip
"""botocore's own failures (no AWS answer) that are the network's, not the request's."""


def retryable(code: str, http_status: int | None = None) -> bool:
    """Whether a launch that failed with AWS error ``code`` may succeed later unchanged:
    the codes of :data:`RETRYABLE_CODES`, and any other answered with a 5xx. Everything
    else (``UnauthorizedOperation``, ``AuthFailure``, ``InvalidParameterValue``,
    ``InvalidSubnetID.NotFound`` …) needs a change to the environment or the account."""
    return code in RETRYABLE_CODES or (http_status is not None and http_status >= 500)


def aws_error(e: BaseException) -> tuple[str, bool] | None:
    """``(error text, retryable)`` of a failure of a boto3 call, the text starting with the
    AWS error code (``VcpuLimitExceeded: You have requested more vCPU capacity …``); of mnp's
    own refusal (:class:`~mnp.errors.InvalidInput`) with :data:`MNP_REFUSED`; None for
    anything else (a bug: not swallowed)."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    if isinstance(e, ClientError):
        err = e.response.get("Error") or {}
        code = str(err.get("Code") or "UnknownError")
        message = str(err.get("Message") or e)
        status = (e.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return f"{code}: {message}", retryable(code, status)
    if isinstance(e, BotoCoreError):
        name = type(e).__name__
        return f"{name}: {e}", name in RETRYABLE_BOTOCORE
    if isinstance(e, InvalidInput):
        return f"{MNP_REFUSED}: {e}", False
    return None


def cluster_id(home: Path) -> str:
    """This head's ``mnp:cluster`` tag value: read from ``<home>/ec2-cluster-id``, made there
    (``mnp-`` and 16 random hex digits) the first time. Random, not derived from the home's
    path: the default home is the same path on every machine, and two heads in one account
    must never see each other's instances. The file is created exclusively, so providers
    racing for a new home agree on one value. Deleting it orphans the running instances
    (they keep their tags; terminate them by the old value)."""
    path = home / CLUSTER_FILE
    try:
        return _read_cluster(path)
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    value = "mnp-" + secrets.token_hex(8)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return _read_cluster(path)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def _read_cluster(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise ProviderError(f"{path} is empty: it must hold this head's mnp:cluster tag value")
    return value


def client_token(cluster: str, node_id: str) -> str:
    """RunInstances' idempotency token for a node: ``<cluster>-<node id>``, or its SHA-256
    (hex, 64 characters) when that is longer than EC2's 64. The cluster is in it because
    tokens are per account and region: another head's node of the same id must not be
    taken for this one's."""
    token = f"{cluster}-{node_id}"
    if len(token) <= 64 and token.isascii() and token.isprintable():
        return token
    return hashlib.sha256(token.encode()).hexdigest()


def spot_max_price(
    compute_resources: Mapping[str, Any], instance_type: str, prices: PriceTable
) -> str | None:
    """The Spot ``MaxPrice`` (USD per hour, as EC2 takes it: a decimal string) of a SPOT
    environment's instance: ``bidPercentage`` % of the type's On-Demand price, rounded down
    to 1e-6 (never above the bid). None (EC2's default cap, the On-Demand price) when not
    SPOT, without a ``bidPercentage`` (AWS Batch's default is 100 %) or without a price for
    the type in the table."""
    if compute_resources.get("type") != "SPOT":
        return None
    percent = compute_resources.get("bidPercentage")
    price = prices.get(instance_type)
    if percent is None or isinstance(percent, bool) or price is None:
        return None
    cap = Decimal(str(price)) * Decimal(str(percent)) / 100
    return str(cap.quantize(Decimal("0.000001"), rounding=ROUND_DOWN).normalize())


def subnet_for(compute_resources: Mapping[str, Any], key: str) -> str | None:
    """Which of the environment's ``subnets`` an instance goes to: the first when the
    environment has a placement group (a cluster placement group is in one Availability
    Zone), else one picked by ``key`` (the gang's key, so a gang stays in one subnet, or the
    node id), spreading the environment over its subnets. None: no subnets."""
    subnets = [str(s) for s in compute_resources.get("subnets") or []]
    if not subnets:
        return None
    if compute_resources.get("placementGroup"):
        return subnets[0]
    return subnets[zlib.crc32(key.encode()) % len(subnets)]


def launch_params(
    request: LaunchRequest,
    cluster: str,
    template_data: Mapping[str, Any] | None,
    prices: PriceTable,
    from_override: bool = False,
) -> dict[str, Any]:
    """RunInstances' keyword arguments for one node (pure): :func:`run_instances_params`
    with one instance, the node's subnet (:func:`subnet_for`), its :func:`client_token` and
    its Spot cap (:func:`spot_max_price`). :class:`InvalidInput` when the request lacks its
    instance type or boot data, or the merge refuses it."""
    if not request.instance_type:
        raise InvalidInput("instanceType: an EC2 node needs its instance type")
    if request.boot is None:
        raise InvalidInput("boot: an EC2 node needs its boot data (its user data)")
    if request.boot.node_id != request.request_id:
        raise InvalidInput(f"boot: it is node {request.boot.node_id}'s, not {request.request_id}'s")
    cr = request.compute_resources
    return run_instances_params(
        compute_resources=cr,
        template_data=template_data,
        instance_type=request.instance_type,
        count=1,
        cluster=cluster,
        ce_name=request.node.compute_environment,
        boot=request.boot,
        from_override=from_override,
        subnet=subnet_for(cr, request.gang or request.request_id),
        client_token=client_token(cluster, request.request_id),
        max_price=spot_max_price(cr, request.instance_type, prices),
    )


def instance_of(item: Mapping[str, Any]) -> Instance | None:
    """A DescribeInstances ``Instances`` entry as an :class:`Instance` (None without an
    ``mnp:node`` tag)."""
    tags = {t.get("Key"): t.get("Value") for t in item.get("Tags") or []}
    node_id = tags.get("mnp:node")
    if not node_id:
        return None
    return Instance(
        node_id=str(node_id),
        instance_id=item.get("InstanceId"),
        instance_type=item.get("InstanceType"),
        private_ip=item.get("PrivateIpAddress"),
    )


_Templates = dict[tuple[tuple[str, str], ...], Mapping[str, Any]]
"""Launch template data by its DescribeLaunchTemplateVersions arguments (one launch call's)."""


@dataclass(frozen=True, slots=True)
class _Found:
    node_id: str
    instance_id: str
    state: str


class Ec2Provider:
    """Launches, lists and terminates this head's instances; thread-safe (boto3 clients are,
    and the provider's own books — placement groups made — are behind a lock).

    Idempotency: each node is one RunInstances (``MinCount = MaxCount = 1``: user data is per
    node, it holds the node's join token) with :func:`client_token` as its ``ClientToken``, so
    AWS itself returns the first launch's instance to a retried call. Before launching, the
    provider also looks for instances already tagged ``mnp:node`` with the requested ids
    (DescribeInstances, one call per batch) and launches none for those: moto ignores
    ``ClientToken``, and the look-up also covers a head that died between a launch and its
    answer, whose repeat may come after the token's expiry.

    Gangs: the requests of one ``gang`` key are launched one after the other; when one
    fails, the gang's instances already up (launched now or earlier) are terminated and every
    request of the gang fails with that reason (a gang EC2 cannot place is released, not
    held). Gangs and single nodes are launched concurrently (``launch_threads``).

    Placement groups: an environment's ``placementGroup`` is created (``cluster`` strategy)
    before its first launch through this object, an existing one is used as it is, and its
    instances are launched into it (``Placement.GroupName``).

    ``terminate`` ignores ``grace_seconds``: EC2 shuts an instance down (the agent gets its
    SIGTERM from the OS) on its own schedule.
    """

    def __init__(
        self,
        head_url: str = "",
        home: Path = Path(),
        token: str | None = None,
        *,
        region: str | None = None,
        cluster: str | None = None,
        client: Any = None,
        prices: PriceTable | None = None,
        launch_threads: int = 8,
    ) -> None:
        self.head_url = head_url
        self.home = home
        self.cluster = cluster if cluster is not None else cluster_id(home)
        self.client: Any = client if client is not None else make_client(region)
        self.prices = prices if prices is not None else load_prices()
        self.launch_threads = max(1, launch_threads)
        self._lock = threading.Lock()
        self._groups: set[str] = set()
        self._catalogue: Catalogue | None = None

    def catalogue(self) -> Catalogue:
        """The instance types EC2 offers in the region (DescribeInstanceTypes, asked once per
        provider: a head restart asks again). Raises :class:`ProviderError` when EC2 cannot
        be asked."""
        with self._lock:
            if self._catalogue is None:
                try:
                    self._catalogue = catalogue_from_ec2(self.client)
                except Exception as e:
                    raise self._provider_error("listing the instance types", e) from e
            return self._catalogue

    # -- launch ---------------------------------------------------------------------------

    def launch(self, requests: Sequence[LaunchRequest]) -> builtins.list[LaunchOutcome]:
        if not requests:
            return []
        try:
            found = self._find([r.request_id for r in requests], OWNED_STATES)
        except Exception as e:
            return self._fail_all(requests, e)
        units: dict[str, list[LaunchRequest]] = {}
        for r in requests:
            units.setdefault(f"gang:{r.gang}" if r.gang else f"node:{r.request_id}", []).append(r)
        group_errors = self._placement_groups(requests)
        templates: _Templates = {}
        out: list[LaunchOutcome] = []
        workers = min(self.launch_threads, len(units))
        with ThreadPoolExecutor(workers, thread_name_prefix="mnp-ec2-launch") as pool:
            futures = [
                pool.submit(self._launch_unit, unit, found, group_errors, templates)
                for unit in units.values()
            ]
            for f in futures:
                out += f.result()
        return out

    def _fail_all(self, requests: Sequence[LaunchRequest], e: Exception) -> list[LaunchOutcome]:
        described = aws_error(e)
        if described is None:
            raise e
        text, again = described
        return [LaunchOutcome(r.request_id, error=text, retryable=again) for r in requests]

    def _placement_groups(self, requests: Sequence[LaunchRequest]) -> dict[str, tuple[str, bool]]:
        """Create each named placement group not yet made through this object; returns the
        groups that could not be made → (error, retryable)."""
        errors: dict[str, tuple[str, bool]] = {}
        names = {str(r.compute_resources["placementGroup"]) for r in requests
                 if r.compute_resources.get("placementGroup")}  # fmt: skip
        for name in sorted(names):
            with self._lock:
                if name in self._groups:
                    continue
            try:
                self.client.create_placement_group(GroupName=name, Strategy="cluster")
            except Exception as e:
                described = aws_error(e)
                if described is None:
                    raise
                if not described[0].startswith("InvalidPlacementGroup.Duplicate:"):
                    errors[name] = described
                    continue
            with self._lock:
                self._groups.add(name)
        return errors

    def _launch_unit(
        self,
        unit: list[LaunchRequest],
        found: Mapping[str, _Found],
        group_errors: Mapping[str, tuple[str, bool]],
        templates: _Templates,
    ) -> list[LaunchOutcome]:
        """One gang (or one single node): launched in order; a failure releases the gang."""
        done: dict[str, str] = {}  # node id → instance id, up for this unit
        for r in unit:
            if r.request_id in found:
                done[r.request_id] = found[r.request_id].instance_id
                continue
            group = r.compute_resources.get("placementGroup")
            failure = group_errors.get(str(group)) if group else None
            if failure is None:
                try:
                    done[r.request_id] = self._run_one(r, templates)
                except Exception as e:
                    failure = aws_error(e)
                    if failure is None:
                        raise
            if failure is not None:
                return self._release(unit, r, failure, done)
        return [LaunchOutcome(r.request_id, instance_id=done[r.request_id]) for r in unit]

    def _run_one(self, r: LaunchRequest, templates: _Templates) -> str:
        spec, from_override = template_spec_for(
            r.compute_resources.get("launchTemplate"), r.instance_type or ""
        )
        data = self._template(spec, templates) if spec is not None else None
        params = launch_params(r, self.cluster, data, self.prices, from_override)
        answer = self.client.run_instances(**params)
        [instance] = answer["Instances"]
        instance_id = str(instance["InstanceId"])
        log.info("launched %s as %s (%s)", r.request_id, instance_id, r.instance_type)
        return instance_id

    def _template(self, spec: Mapping[str, str], cache: _Templates) -> Mapping[str, Any]:
        """The launch template version's data (DescribeLaunchTemplateVersions), once per
        launch call."""
        key = tuple(sorted(spec.items()))
        with self._lock:
            if key in cache:
                return cache[key]
        args: dict[str, Any] = {"Versions": [spec["Version"]]}
        for name in ("LaunchTemplateId", "LaunchTemplateName"):
            if name in spec:
                args[name] = spec[name]
        versions = self.client.describe_launch_template_versions(**args)
        items = versions.get("LaunchTemplateVersions") or []
        if not items:
            raise InvalidInput(f"launchTemplate: no version {spec['Version']} of {spec}")
        data: Mapping[str, Any] = items[0].get("LaunchTemplateData") or {}
        with self._lock:
            cache[key] = data
        return data

    def _release(
        self,
        unit: list[LaunchRequest],
        failed: LaunchRequest,
        failure: tuple[str, bool],
        done: Mapping[str, str],
    ) -> list[LaunchOutcome]:
        """``failed`` could not be launched: terminate the unit's instances already up and
        fail every request of the unit with the reason."""
        text, again = failure
        if len(unit) == 1:
            return [LaunchOutcome(failed.request_id, error=text, retryable=again)]
        code, _, message = text.partition(": ")
        released = ""
        if done:
            try:
                self._terminate_instances(builtins.list(done.values()))
                released = f"; its instances {', '.join(sorted(done.values()))} were terminated"
            except Exception as e:
                described = aws_error(e)
                if described is None:
                    raise
                log.error("releasing gang %s: %s", failed.gang, described[0])
                released = (f"; terminating its instances {', '.join(sorted(done.values()))}"
                            f" failed: {described[0]}")  # fmt: skip
        out = []
        for r in unit:
            if r is failed:
                out.append(LaunchOutcome(r.request_id, error=text, retryable=again))
                continue
            reason = (f"{code}: gang {failed.gang} released: node {failed.request_id} could "
                      f"not be launched: {message}{released}")  # fmt: skip
            out.append(LaunchOutcome(r.request_id, error=reason, retryable=again))
        return out

    # -- list and terminate ---------------------------------------------------------------

    def list(self) -> builtins.list[Instance]:
        """This cluster's nodes whose instances are pending or running (DescribeInstances by
        the ``mnp:cluster`` tag). Errors: :class:`~mnp.errors.ProviderError` with the AWS
        error (transient when retryable)."""
        try:
            items = self._describe(
                [
                    {"Name": "tag:mnp:cluster", "Values": [self.cluster]},
                    {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
                ]
            )
        except Exception as e:
            raise self._provider_error("listing instances", e) from e
        found = [i for i in (instance_of(item) for item in items) if i is not None]
        return sorted(found, key=lambda i: (i.node_id, i.instance_id or ""))

    def terminate(self, ids: Sequence[str], grace_seconds: float) -> None:
        """Terminate every instance of this cluster tagged with one of the node ids (in
        batches of :data:`TERMINATE_BATCH`); a node without an instance is skipped.
        Errors: :class:`~mnp.errors.ProviderError` with the AWS error."""
        if not ids:
            return
        try:
            found = self._find(ids, OWNED_STATES, all_of_node=True)
            self._terminate_instances([f.instance_id for f in found.values()])
        except Exception as e:
            raise self._provider_error(f"terminating {', '.join(ids)}", e) from e

    def _terminate_instances(self, instance_ids: builtins.list[str]) -> None:
        for start in range(0, len(instance_ids), TERMINATE_BATCH):
            batch = instance_ids[start : start + TERMINATE_BATCH]
            self.client.terminate_instances(InstanceIds=batch)
            log.info("terminated %s", ", ".join(batch))

    def _provider_error(self, doing: str, e: Exception) -> ProviderError:
        described = aws_error(e)
        if described is None:
            raise e
        return ProviderError(f"{doing}: {described[0]}", transient=described[1])

    def _find(
        self, node_ids: Iterable[str], states: Sequence[str], all_of_node: bool = False
    ) -> dict[str, _Found]:
        """This cluster's instances of ``node_ids`` in ``states``: node id → one of them
        (keyed by instance id instead with ``all_of_node``: every one, duplicates too)."""
        ids = sorted(set(node_ids))
        out: dict[str, _Found] = {}
        for start in range(0, len(ids), FILTER_VALUES):
            items = self._describe(
                [
                    {"Name": "tag:mnp:cluster", "Values": [self.cluster]},
                    {"Name": "tag:mnp:node", "Values": ids[start : start + FILTER_VALUES]},
                    {"Name": "instance-state-name", "Values": list(states)},
                ]
            )
            for item in items:
                instance = instance_of(item)
                if instance is None or instance.instance_id is None:
                    continue
                state = str((item.get("State") or {}).get("Name", ""))
                f = _Found(instance.node_id, instance.instance_id, state)
                out[f.instance_id if all_of_node else f.node_id] = f
        return out

    def _describe(self, filters: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        pages = self.client.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for res in page.get("Reservations") or []
                for i in res.get("Instances") or []]  # fmt: skip


def make_client(region: str | None = None) -> Any:
    """A boto3 EC2 client with boto3's own configuration (region unless given, endpoint,
    credentials) and its ``standard`` retry mode (throttling backed off before a call
    fails). :class:`~mnp.errors.ProviderError` when boto3 is missing or has no region."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
        from botocore.exceptions import NoRegionError
    except ImportError:
        raise ProviderError("the ec2 provider needs boto3: pip install 'mnp[ec2]'") from None
    try:
        return boto3.session.Session(region_name=region).client(
            "ec2", config=Config(retries={"mode": "standard", "max_attempts": 5})
        )
    except NoRegionError:
        raise ProviderError(
            "the ec2 provider has no region: set AWS_DEFAULT_REGION (or the profile's region)"
        ) from None


def _is_a_provider(p: Ec2Provider) -> Provider:
    return p  # mypy checks here that the provider keeps the protocol's shape
