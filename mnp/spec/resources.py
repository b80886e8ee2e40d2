"""What a job's container asks for: resources and container properties (AWS shapes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Resources:
    vcpus: float = 1.0
    memory_mib: int = 0
    gpus: int = 0

    def fits_in(self, free: Resources) -> bool:
        return (
            self.vcpus <= free.vcpus + 1e-9
            and self.memory_mib <= free.memory_mib
            and self.gpus <= free.gpus
        )

    def minus(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus - other.vcpus, self.memory_mib - other.memory_mib, self.gpus - other.gpus
        )

    def plus(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus, self.memory_mib + other.memory_mib, self.gpus + other.gpus
        )

    def shortfall(self, capacity: Resources) -> str | None:
        """Why this request can never fit ``capacity`` (None when it can)."""
        if self.vcpus > capacity.vcpus + 1e-9:
            return f"needs {_num(self.vcpus)} vCPUs, largest node has {_num(capacity.vcpus)}"
        if self.memory_mib > capacity.memory_mib:
            return f"needs {self.memory_mib} MiB memory, largest node has {capacity.memory_mib} MiB"
        if self.gpus > capacity.gpus:
            return f"needs {self.gpus} GPUs, largest node has {capacity.gpus}"
        return None

    def to_requirements(self) -> list[dict[str, str]]:
        out = [{"type": "VCPU", "value": _num(self.vcpus)}]
        if self.memory_mib:
            out.append({"type": "MEMORY", "value": str(self.memory_mib)})
        if self.gpus:
            out.append({"type": "GPU", "value": str(self.gpus)})
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(slots=True)
class ContainerSpec:
    """Resolved container properties of a job (definition + overrides + parameters)."""

    command: list[str]
    environment: dict[str, str]
    resources: Resources
    image: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other containerProperties field, kept verbatim (volumes, mountPoints, …)."""
    legacy: frozenset[str] = frozenset()
    """Which of the deprecated ``vcpus`` and ``memory`` the definition or the overrides gave:
    shown again with the job (as AWS shows them), beside ``resourceRequirements``."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.image is not None:
            out["image"] = self.image
        if "vcpus" in self.legacy:
            vcpus = self.resources.vcpus
            out["vcpus"] = int(vcpus) if float(vcpus).is_integer() else vcpus
        if "memory" in self.legacy:
            out["memory"] = self.resources.memory_mib
        out["command"] = list(self.command)
        out["environment"] = [{"name": k, "value": v} for k, v in self.environment.items()]
        out["resourceRequirements"] = self.resources.to_requirements()
        return out

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ContainerSpec:
        known = {"image", "command", "environment", "resourceRequirements", *LEGACY}
        return cls(
            command=[str(c) for c in d.get("command") or []],
            environment={
                str(e["name"]): str(e.get("value", "")) for e in d.get("environment") or []
            },
            resources=resources_from_wire(d),
            image=d.get("image"),
            extra={k: v for k, v in d.items() if k not in known},
            legacy=legacy_fields(d),
        )


LEGACY = ("vcpus", "memory")
"""containerProperties' (and containerOverrides') deprecated resource fields."""


def legacy_fields(d: dict[str, Any]) -> frozenset[str]:
    """Which of :data:`LEGACY` ``d`` gives (not null)."""
    return frozenset(k for k in LEGACY if d.get(k) is not None)


def resources_from_wire(d: dict[str, Any], base: Resources | None = None) -> Resources:
    """Read ``resourceRequirements`` (and the deprecated ``vcpus``/``memory``) over ``base``."""
    r = Resources(base.vcpus, base.memory_mib, base.gpus) if base else Resources()
    if d.get("vcpus") is not None:
        r.vcpus = float(d["vcpus"])
    if d.get("memory") is not None:
        r.memory_mib = int(d["memory"])
    for req in d.get("resourceRequirements") or []:
        kind, value = str(req["type"]).upper(), str(req["value"])
        if kind == "VCPU":
            r.vcpus = float(value)
        elif kind == "MEMORY":
            r.memory_mib = int(value)
        elif kind == "GPU":
            r.gpus = int(value)
    return r
