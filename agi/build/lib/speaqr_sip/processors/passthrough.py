"""The identity processor: the caller hears their own audio, unchanged."""

from collections.abc import AsyncIterator

from speaqr_sip.processors.base import FrameQueue, Processor, SessionParams


class PassthroughProcessor(Processor):
    name = "passthrough"

    def __init__(self, max_frames: int = 500) -> None:
        self._queue = FrameQueue(max_frames)

    async def start(self, params: SessionParams) -> None:
        return None

    async def process(self, frame: bytes) -> None:
        self._queue.put(frame)

    def frames(self) -> AsyncIterator[bytes]:
        return aiter(self._queue)

    async def close(self) -> None:
        self._queue.close()

    @property
    def dropped(self) -> int:
        return self._queue.dropped
