"""An EC2 Spot instance's interruption notice, watched for from the node's agent.

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

log = logging.getLogger(__name__)

SPOT_POLL_SECONDS = 5.0


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
