"""What the agent of an EC2 node learns from the instance metadata service (IMDSv2): who the
instance is (:func:`instance_identity`, sent with its registration: the head checks it is
the instance it launched for the node) and, on Spot, its interruption notice.

EC2 announces a Spot interruption on the metadata service (``spot/instance-action``) two
minutes ahead; AWS suggests checking every 5 seconds. The agent starts watching once the head
says the node is an EC2 instance (``spotNotices`` in its register reply) and sends the notice
with each poll; the head drains the node (nothing new lands on it), and once the instance is
gone its attempts end as ``Host EC2 (instance i-…) terminated.``, as on AWS Batch.
"""

from __future__ import annotations

import asyncio
import logging

from mnp.ec2.imds import Imds, ImdsError
from mnp.spec.protocol import InstanceIdentity

log = logging.getLogger(__name__)

SPOT_POLL_SECONDS = 5.0
IDENTITY_TRIES = 5


async def instance_identity() -> InstanceIdentity | None:
    """This instance's id, type, zone and placement group; None (logged) when the metadata
    service does not answer after a few tries (the node still joins, by its join token)."""
    imds = Imds()
    for attempt in range(IDENTITY_TRIES):
        try:
            me = await asyncio.to_thread(imds.identity)
        except (ImdsError, OSError) as e:
            log.warning("instance metadata (try %d): %s", attempt + 1, e)
            await asyncio.sleep(0.5 * 2**attempt)
            continue
        return InstanceIdentity(
            me.instance_id, me.instance_type, me.availability_zone, me.placement_group
        )
    return None


class SpotWatch:
    """One watcher per agent; :attr:`notice` stays None until a notice was seen."""

    def __init__(self, every: float = SPOT_POLL_SECONDS) -> None:
        self.every = every
        self.notice: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin watching (on the running loop); a second call does nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        imds = Imds()
        while self.notice is None:
            try:
                seen = await asyncio.to_thread(imds.spot_notice)
            except (ImdsError, OSError) as e:  # no metadata service (yet): keep looking
                log.debug("spot notice: %s", e)
                seen = None
            if seen is not None:
                self.notice = f"spot instance-action {seen.action} at {seen.time}"
                log.warning("%s", self.notice)
                return
            await asyncio.sleep(self.every)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
