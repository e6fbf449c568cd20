"""The processor interface: PCMU frames in, PCMU 20 ms frames out, one session per call."""

import asyncio
import collections
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar


class ProcessorError(Exception):
    """The processor cannot go on (start failed, remote service lost, protocol error)."""


@dataclass(frozen=True, slots=True)
class SessionParams:
    """Everything a processor may need about the call it serves."""

    channel_id: str
    email: str
    origin: str
    destination: str
    source_language: str
    target_language: str
    voice: str


class Processor(ABC):
    """Life cycle: ``start`` once, ``process`` per inbound frame while iterating ``frames``,
    ``close`` once (idempotent, bounded in time)."""

    name: ClassVar[str]

    @abstractmethod
    async def start(self, params: SessionParams) -> None:
        """Open the session; raise :class:`ProcessorError` if it cannot be opened."""

    @abstractmethod
    async def process(self, frame: bytes) -> None:
        """Feed one inbound PCMU frame (normally 160 bytes). Must not block for long."""

    @abstractmethod
    def frames(self) -> AsyncIterator[bytes]:
        """Outbound PCMU frames; ends after ``close``; raises :class:`ProcessorError`."""

    @abstractmethod
    async def close(self) -> None:
        """End the session and release everything."""


class FrameQueue:
    """Outbound frames with a size cap (oldest dropped), an end, and a failure state."""

    def __init__(self, max_frames: int) -> None:
        self._frames: collections.deque[bytes] = collections.deque()
        self._max = max(1, max_frames)
        self._wakeup = asyncio.Event()
        self._closed = False
        self._error: ProcessorError | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, frame: bytes) -> None:
        if self._closed:
            return
        if len(self._frames) >= self._max:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._wakeup.set()

    def fail(self, error: ProcessorError) -> None:
        if self._error is None and not self._closed:
            self._error = error
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    @property
    def error(self) -> ProcessorError | None:
        return self._error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            if self._error is not None:
                raise self._error
            if self._frames:
                yield self._frames.popleft()
                continue
            if self._closed:
                return
            self._wakeup.clear()
            await self._wakeup.wait()
