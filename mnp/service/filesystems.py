"""A compute environment's shared filesystem as a request declares it: the native API's
``mnp.sharedFilesystem`` block, or the :data:`~mnp.spec.sharedfs.SHARED_FS_TAG` tag (boto3
sends no ``mnp`` block), checked for how the environment's nodes get it."""

from __future__ import annotations

from typing import Any

from mnp.errors import FieldError, InvalidInput
from mnp.spec.sharedfs import SHARED_FS_TAG, NodesUse, SharedFilesystem, shared_fs_errors


def shared_filesystem(
    d: dict[str, Any] | None, tags: dict[str, str] | None, nodes: NodesUse
) -> SharedFilesystem | None:
    """The environment's shared filesystem, from its ``mnp.sharedFilesystem`` block or its
    :data:`SHARED_FS_TAG` tag (:func:`_from_tag`: boto3 sends no ``mnp`` block), checked for
    how its ``nodes`` get it; :class:`InvalidInput` naming each bad field
    (``mnp.sharedFilesystem.<field>``, ``tags.mnp:sharedFilesystem``) before anything is made."""
    tag = (tags or {}).get(SHARED_FS_TAG)
    if tag is not None:
        field = f"tags.{SHARED_FS_TAG}"
        if d is not None:
            why = "cannot be given with mnp.sharedFilesystem: declare the filesystem once"
            raise InvalidInput([FieldError(field, why)])
        d = _from_tag(tag)
        errors = shared_fs_errors(d, field, nodes)
        if errors:  # named by the tag, each problem by the word it is about
            raise InvalidInput([
                FieldError(field, f"{_TAG_WORDS[p.rsplit('.', 1)[-1]]} {rule}")
                for p, rule in errors
            ])  # fmt: skip
        return SharedFilesystem.from_doc(d)
    if d is None:
        return None
    errors = shared_fs_errors(d, "mnp.sharedFilesystem", nodes)
    if errors:
        raise InvalidInput([FieldError(path, rule) for path, rule in errors])
    return SharedFilesystem.from_doc(d)


_TAG_WORDS = {
    "kind": "kind (1st word)",
    "source": "source (2nd word)",
    "remote": "remote (2nd word)",
    "mountPath": "mountPath (3rd word)",
}


def _from_tag(value: str) -> dict[str, Any]:
    """The declaration a :data:`SHARED_FS_TAG` value ``<kind> <remote-or-source> <mountPath>``
    stands for: a middle word starting with ``/`` is the ``source`` (a directory), any other
    its ``remote`` (a remote never starts with ``/``). :class:`InvalidInput` naming the tag
    when it is not three words."""
    words = value.split()
    if len(words) != 3:
        why = (
            "must be three words, <kind> <remote-or-source> <mountPath> (e.g. 'lustre "
            f"fs-0123.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh /fsx'), got {len(words)}"
        )
        raise InvalidInput([FieldError(f"tags.{SHARED_FS_TAG}", why)])
    kind, middle, mount_path = words
    where = "source" if middle.startswith("/") else "remote"
    return {"kind": kind, where: middle, "mountPath": mount_path}
