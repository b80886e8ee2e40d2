"""The instance types an EC2 compute environment may launch, and what ``instanceTypes`` means.

A :class:`Catalogue` holds, per instance type, what the chooser needs: vCPUs, memory (MiB),
GPUs and CPU architecture; it is built from EC2's ``DescribeInstanceTypes`` pages
(:func:`catalogue_from_ec2`, the boto3 client passed in) or from plain rows
(:meth:`Catalogue.from_rows`, for tests and offline use).

:meth:`Catalogue.expand` reads AWS Batch's ``computeResources.instanceTypes`` the way the
ComputeResource API reference describes it:

* an exact type (``c5.8xlarge``) is that type;
* a family (``c5``) is every size of it — "You can specify instance families to launch any
  instance type within those families (for example, c5 or p3)" — except bare-metal sizes:
  "Note that metal instance types are not in the instance families (for example c5 does not
  include c5.metal)" (the same reference, as AWS worded it when families were introduced);
* ``default_x86_64`` is the m6i, c6i, r6i and c7i families, ``default_arm64`` the m6g, c6g,
  r6g and c7g families ("default_x86_64 to choose x86 based instance types (from the m6i,
  c6i, r6i, and c7i instance families)");
* ``optimal`` is the same as ``default_x86_64``. The reference used to say "optimal to select
  instance types (from the c4, m4, r4, c5, m5, and r5 instance families)" and adds "Starting
  on 11/01/2025 the behavior of optimal is going to be changed to match default_x86_64";
  mnp follows the current behaviour (:data:`LEGACY_OPTIMAL_FAMILIES` keeps the old list).

Only the families the catalogue holds are used ("Instance family availability varies by
Amazon Web Services Region"). Anything else is refused with the message AWS Batch's
CreateComputeEnvironment gives, ``Instance type can only be one of [...]`` followed by the
valid names (AWS lists sizes, families and ``optimal`` in no stated order; mnp sorts them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mnp.errors import FieldError, InvalidInput

DEFAULT_X86_64_FAMILIES = ("m6i", "c6i", "r6i", "c7i")
DEFAULT_ARM64_FAMILIES = ("m6g", "c6g", "r6g", "c7g")
LEGACY_OPTIMAL_FAMILIES = ("c4", "m4", "r4", "c5", "m5", "r5")
"""What ``optimal`` meant before 2025-11-01; kept for reference, not used."""
KEYWORDS: Mapping[str, tuple[str, ...]] = {
    "optimal": DEFAULT_X86_64_FAMILIES,
    "default_x86_64": DEFAULT_X86_64_FAMILIES,
    "default_arm64": DEFAULT_ARM64_FAMILIES,
}
UNKNOWN_TYPE_PREFIX = "Instance type can only be one of ["


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One EC2 instance type as the chooser sees it."""

    name: str
    vcpus: int
    memory_mib: int
    gpus: int = 0
    architecture: str = "x86_64"

    @property
    def family(self) -> str:
        """``c5`` of ``c5.large``."""
        return self.name.partition(".")[0]

    @property
    def size(self) -> str:
        return self.name.partition(".")[2]

    @property
    def metal(self) -> bool:
        """A bare-metal size (``c5.metal``, ``c7i.metal-24xl``), outside its family's entry."""
        return self.size.startswith("metal")


class _Paginator(Protocol):
    def paginate(self, **kwargs: Any) -> Iterable[Mapping[str, Any]]: ...


class EC2Client(Protocol):
    """The one call of a boto3 EC2 client this module makes."""

    def get_paginator(self, operation_name: str) -> _Paginator: ...


class Catalogue:
    """Instance types by name; immutable once built, safe to share between threads."""

    def __init__(self, types: Iterable[InstanceType]) -> None:
        self._types = {t.name: t for t in types}
        self._families: dict[str, tuple[InstanceType, ...]] = {}
        by_family: dict[str, list[InstanceType]] = {}
        for t in self._types.values():
            if not t.metal:
                by_family.setdefault(t.family, []).append(t)
        for family, members in by_family.items():
            self._families[family] = tuple(sorted(members, key=_size_key))

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> Catalogue:
        """From plain rows ``{"name", "vcpus", "memoryMiB", "gpus"?, "architecture"?}``;
        ValueError names the row and field that is wrong."""
        out = []
        for i, row in enumerate(rows):
            try:
                name, vcpus, memory = row["name"], row["vcpus"], row["memoryMiB"]
            except KeyError as e:
                raise ValueError(f"row {i}: {e.args[0]} is required") from None
            gpus, arch = row.get("gpus", 0), row.get("architecture", "x86_64")
            if not isinstance(name, str) or "." not in name:
                raise ValueError(f"row {i}: name must look like family.size, got {name!r}")
            for key, value in (("vcpus", vcpus), ("memoryMiB", memory), ("gpus", gpus)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"row {i} ({name}): {key} must be an integer >= 0")
            out.append(InstanceType(name, vcpus, memory, gpus, str(arch)))
        return cls(out)

    @classmethod
    def from_describe(cls, pages: Iterable[Mapping[str, Any]]) -> Catalogue:
        """From ``DescribeInstanceTypes`` response pages (their ``InstanceTypes`` items)."""
        return cls(_from_item(item) for page in pages for item in page.get("InstanceTypes", []))

    def __len__(self) -> int:
        return len(self._types)

    def __iter__(self) -> Iterator[InstanceType]:
        return iter(self._types.values())

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def get(self, name: str) -> InstanceType | None:
        return self._types.get(name)

    def __getitem__(self, name: str) -> InstanceType:
        return self._types[name]

    def families(self) -> frozenset[str]:
        return frozenset(self._families)

    def family(self, family: str) -> tuple[InstanceType, ...]:
        """Every non-metal size of ``family``, smallest first (empty when unknown)."""
        return self._families.get(family, ())

    def valid_names(self) -> list[str]:
        """Everything ``instanceTypes`` accepts here: keywords, families, types; sorted."""
        return sorted({*KEYWORDS, *self._families, *self._types})

    def unknown_message(self) -> str:
        """AWS Batch's text for an ``instanceTypes`` entry that is none of those."""
        return f"{UNKNOWN_TYPE_PREFIX}{', '.join(self.valid_names())}]"

    def expand_entry(self, entry: str) -> tuple[InstanceType, ...] | None:
        """The types one ``instanceTypes`` entry stands for; None when it names nothing."""
        if entry in KEYWORDS:
            return tuple(t for f in KEYWORDS[entry] for t in self.family(f))
        exact = self._types.get(entry)
        if exact is not None:
            return (exact,)
        return self._families.get(entry)

    def check(self, entries: Iterable[str], path: str = "instanceTypes") -> list[FieldError]:
        """Every problem with ``entries``: unknown names (AWS's message, once) and a mix of
        CPU architectures ("the instance types that you select for the compute environment
        must share the same architecture", the ComputeResource reference)."""
        errors: list[FieldError] = []
        found: list[InstanceType] = []
        unknown = False
        for entry in entries:
            got = self.expand_entry(entry)
            if got is None:
                unknown = True
            else:
                found.extend(got)
        if unknown:
            errors.append(FieldError(path, self.unknown_message()))
        arches: dict[str, str] = {}
        for t in found:
            arches.setdefault(t.architecture, t.name)
        if len(arches) > 1:
            seen = ", ".join(f"{a} ({n})" for a, n in sorted(arches.items()))
            errors.append(FieldError(path, f"instance types must share one architecture: {seen}"))
        return errors

    def expand(self, entries: Iterable[str], path: str = "instanceTypes") -> list[InstanceType]:
        """The distinct types ``entries`` allow, in catalogue order of first mention.
        Raises :class:`~mnp.errors.InvalidInput` with :meth:`check`'s errors."""
        entries = list(entries)
        errors = self.check(entries, path)
        if errors:
            raise InvalidInput(errors)
        out: dict[str, InstanceType] = {}
        for entry in entries:
            for t in self.expand_entry(entry) or ():
                out.setdefault(t.name, t)
        return list(out.values())


def catalogue_from_ec2(client: EC2Client, **filters: Any) -> Catalogue:
    """Every instance type the client's region offers, through ``DescribeInstanceTypes``
    pages (``filters`` go to the call, e.g. ``Filters=[...]``). Errors are boto3's."""
    pages = client.get_paginator("describe_instance_types").paginate(**filters)
    return Catalogue.from_describe(pages)


def _from_item(item: Mapping[str, Any]) -> InstanceType:
    arches = item.get("ProcessorInfo", {}).get("SupportedArchitectures", []) or ["x86_64"]
    arch = next((a for a in ("x86_64", "arm64") if a in arches), arches[0])
    gpus = sum(int(g.get("Count", 0)) for g in item.get("GpuInfo", {}).get("Gpus", []))
    return InstanceType(
        name=item["InstanceType"],
        vcpus=int(item["VCpuInfo"]["DefaultVCpus"]),
        memory_mib=int(item["MemoryInfo"]["SizeInMiB"]),
        gpus=gpus,
        architecture=arch,
    )


def _size_key(t: InstanceType) -> tuple[int, int, str]:
    return (t.vcpus, t.memory_mib, t.name)
