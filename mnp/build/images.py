"""A compute environment's image policy: whether its nodes run a job's image in Docker, or
the job's command as a plain process (air-gapped sites, nodes without an engine or registry).

AWS's API has no field for it, so it is declared in the environment's tags, as its shared
filesystem is (:data:`mnp.spec.sharedfs.SHARED_FS_TAG`): boto3 and the aws CLI can set tags,
and mnp keeps them with the environment.

- :data:`IMAGE_POLICY_TAG` = ``docker`` (the default: every image runs in the node's Docker
  engine; one that cannot be pulled fails the attempt with ``CannotPullContainerError``, as
  on AWS) | ``process`` (never use an engine: run the command as a plain process) | ``auto``
  (the engine where the node has a usable one, else a process; each node decides, since only
  it knows whether its engine answers).
- :data:`IMAGE_TAG_PREFIX` ``<image-or-prefix>`` = ``key=value;…`` maps the images it
  matches to what stands in for them on the nodes: ``entrypoint`` (a command line put before
  the job's command, as Docker's ENTRYPOINT), ``command`` (a command line run when the job
  gives none, as Docker's CMD), ``path`` (directories, ``:``-separated, put before ``PATH``),
  ``dir`` (the working directory). A key matches an image equal to it, an image it is a
  prefix of ending in ``/`` or ``:`` (``ghcr.io/org/``), or one it names up to the tag or
  digest (``busybox`` matches ``busybox:1.36`` and ``busybox@sha256:…``, not
  ``busyboxes``); ``*`` matches any image. The longest matching key wins.

AWS's tag limits hold (key 128 characters, value 256), which is why a mapping is a short
``key=value`` list rather than a JSON document. Everything here is pure:
:func:`image_policy` checks a create request's tags (every problem at once, each naming its
tag and rule); :func:`policy_of` reads a stored environment's, never raising.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from mnp.errors import FieldError, InvalidInput
from mnp.spec.containers import WithoutEngine

log = logging.getLogger("mnp.build.images")

IMAGE_POLICY_TAG = "mnp:imagePolicy"
IMAGE_TAG_PREFIX = "mnp:image:"
DOCKER, PROCESS, AUTO = "docker", "process", "auto"
POLICIES = (DOCKER, PROCESS, AUTO)
MAPPING_KEYS = ("entrypoint", "command", "path", "dir")
ANY_IMAGE = "*"
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
"""AWS's limits on a tag's key and value (characters)."""


@dataclass(frozen=True, slots=True)
class ImageMapping:
    """What stands in for an image on a node that runs its job as a process."""

    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    path: tuple[str, ...] = ()
    directory: str | None = None


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """An environment's image policy and its image mappings (key → mapping)."""

    policy: str = DOCKER
    mappings: tuple[tuple[str, ImageMapping], ...] = ()

    def mapping_for(self, image: str) -> ImageMapping | None:
        """The mapping of the longest key matching ``image`` (see the module's rule)."""
        found = [(len(k), m) for k, m in self.mappings if k == ANY_IMAGE or matches(k, image)]
        return max(found, key=lambda f: f[0])[1] if found else None

    def without_engine(self, image: str) -> WithoutEngine | None:
        """What a node gets for ``image``: None under ``docker`` (the engine, always)."""
        if self.policy == DOCKER:
            return None
        m = self.mapping_for(image) or ImageMapping()
        return WithoutEngine(self.policy, m.entrypoint, m.command, m.path, m.directory)


def matches(key: str, image: str) -> bool:
    """Whether mapping key ``key`` names ``image``: equal, a prefix ending in ``/`` or ``:``,
    or the image's name up to its ``:tag`` or ``@digest``."""
    if image == key:
        return True
    if not image.startswith(key):
        return False
    return key.endswith(("/", ":")) or image[len(key)] in ":@"


def image_policy(tags: Mapping[str, str] | None) -> ImagePolicy:
    """The policy that ``tags`` (a create request's) declare; :class:`InvalidInput` listing
    every bad tag (``tags.<key>``) with the rule it breaks."""
    errors: list[FieldError] = []
    policy = DOCKER
    mappings: list[tuple[str, ImageMapping]] = []
    for key, value in (tags or {}).items():
        field = f"tags.{key}"
        if key == IMAGE_POLICY_TAG:
            if value not in POLICIES:
                errors.append(FieldError(field, f"must be one of {', '.join(POLICIES)}"))
            else:
                policy = value
        elif key.startswith(IMAGE_TAG_PREFIX):
            image = key[len(IMAGE_TAG_PREFIX) :]
            problems = _key_errors(key, image) + _value_errors(value)
            errors += [FieldError(field, p) for p in problems]
            if not problems:
                mappings.append((image, _mapping(value)))
    if errors:
        raise InvalidInput(errors)
    return ImagePolicy(policy, tuple(sorted(mappings)))


def policy_of(tags: Mapping[str, str] | None, environment: str = "") -> ImagePolicy:
    """:func:`image_policy` of a stored environment's ``tags``, for building an attempt: tags
    that went wrong since they were checked (changed through TagResource) count as the
    default ``docker``, with a warning, rather than failing the attempt's build."""
    try:
        return image_policy(tags)
    except InvalidInput as exc:
        log.warning("environment %s: image policy ignored (docker): %s", environment, exc)
        return ImagePolicy()


def _key_errors(key: str, image: str) -> list[str]:
    if not image:
        return [f"must name an image after {IMAGE_TAG_PREFIX} (or {ANY_IMAGE}: any image)"]
    if len(key) > TAG_KEY_MAX:
        return [f"is {len(key)} characters; a tag key has at most {TAG_KEY_MAX}"]
    if any(c.isspace() for c in image):
        return ["must name an image (no spaces)"]
    return []


def _value_errors(value: str) -> list[str]:
    """The rules a mapping ``key=value;…`` breaks (empty: none)."""
    if len(value) > TAG_VALUE_MAX:
        return [f"is {len(value)} characters; a tag value has at most {TAG_VALUE_MAX}"]
    errors: list[str] = []
    seen: set[str] = set()
    parts = [p.strip() for p in value.split(";") if p.strip()]
    if not parts:
        return [f"must be key=value pairs separated by ';', keys {', '.join(MAPPING_KEYS)}"]
    for part in parts:
        name, eq, item = (s.strip() for s in part.partition("="))
        if not eq or name not in MAPPING_KEYS:
            errors.append(f"{part!r} must be key=value with key one of {', '.join(MAPPING_KEYS)}")
            continue
        if name in seen:
            errors.append(f"{name} is given twice")
        seen.add(name)
        if name in ("entrypoint", "command"):
            try:
                if not shlex.split(item):
                    errors.append(f"{name} must be a command line")
            except ValueError as exc:
                errors.append(f"{name} must be a command line ({exc})")
        elif name == "path":
            if not all(d.startswith("/") for d in item.split(":")):
                errors.append("path must be absolute directories separated by ':'")
        elif not item.startswith("/"):
            errors.append("dir must be an absolute path")
    return errors


def _mapping(value: str) -> ImageMapping:
    """The mapping a checked ``key=value;…`` stands for."""
    items = dict(
        (name.strip(), item.strip())
        for name, _, item in (p.partition("=") for p in value.split(";") if p.strip())
    )
    return ImageMapping(
        entrypoint=tuple(shlex.split(items.get("entrypoint", ""))),
        command=tuple(shlex.split(items.get("command", ""))),
        path=tuple(items["path"].split(":")) if "path" in items else (),
        directory=items.get("dir"),
    )
