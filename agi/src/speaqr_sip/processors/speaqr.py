"""The Speaqr processor: PCMU up as WAV chunks over Socket.IO, MP3 down as PCMU frames."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio

from speaqr_sip.audio import (
    FRAME_MS,
    PCMU_RATE,
    StreamResampler,
    mp3_to_ulaw_frames,
    pcm16_wav,
)
from speaqr_sip.config import SpeaqrConfig
from speaqr_sip.g711 import ulaw_to_pcm
from speaqr_sip.processors.base import FrameQueue, Processor, ProcessorError, SessionParams
from speaqr_sip.speaqr_wire import Session, Wire

logger = logging.getLogger(__name__)

# Chunks waiting to be uploaded; beyond this Speaqr is too slow and the oldest is dropped.
UPLOAD_QUEUE_CHUNKS = 25
CLOSE_TIMEOUT = 2.0


async def connect(client: socketio.AsyncClient, config: SpeaqrConfig) -> None:
    """Open ``client``'s Socket.IO connection to Speaqr with the configured key, within
    connect_timeout; raises TimeoutError or socketio's ConnectionError (a refused key)."""
    headers, auth = Wire.connect_credentials(config.api_key, config.auth_style)
    await asyncio.wait_for(
        client.connect(
            config.url,
            headers=headers,
            auth=auth,
            transports=["websocket"],
            socketio_path=config.socketio_path,
            wait_timeout=max(1, int(config.connect_timeout)),
        ),
        timeout=config.connect_timeout + 1.0,
    )


class SpeaqrProcessor(Processor):
    name = "speaqr"

    def __init__(self, config: SpeaqrConfig, *, max_backlog_ms: int = 10000) -> None:
        self._config = config
        self._wire = Wire.with_overrides(config.events, config.fields)
        self._streaming = config.upload_mode == "stream"
        self._out = FrameQueue(max(1, max_backlog_ms // FRAME_MS))
        self._chunk_bytes = PCMU_RATE * config.chunk_ms // 1000
        self._pending = bytearray()
        self._resampler = StreamResampler(PCMU_RATE, config.upload_sample_rate)
        self._uploads: asyncio.Queue[bytes | None] = asyncio.Queue(UPLOAD_QUEUE_CHUNKS)
        self._client: socketio.AsyncClient | None = None
        self._params: dict[str, Any] = {}
        self._uploader: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._channel = ""
        self._closing = False
        self.uploaded_chunks = 0
        self.dropped_chunks = 0
        self.received_utterances = 0

    # --- life cycle -------------------------------------------------------------------

    async def start(self, params: SessionParams) -> None:
        self._channel = params.channel_id
        session = Session(
            email=params.email,
            origin=params.origin,
            destination=params.destination,
            source_language=params.source_language,
            target_language=params.target_language,
            voice=params.voice,
        )
        self._params = self._wire.session_params(session, streaming=self._streaming)
        client = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, logger=False, engineio_logger=False
        )
        self._client = client
        self._register_handlers(client)
        try:
            await connect(client, self._config)
        except (TimeoutError, socketio.exceptions.ConnectionError) as exc:
            await self._disconnect()
            raise ProcessorError(
                f"cannot connect to Speaqr: {exc or exc.__class__.__name__}"
            ) from exc
        try:
            await self._call("live_connect", self._params)
            if self._streaming:
                await self._call("connect_stream", self._params)
        except ProcessorError:
            await self._disconnect()
            raise
        self._uploader = asyncio.create_task(self._upload_loop(), name=f"speaqr-up-{self._channel}")
        logger.info("channel=%s Speaqr session open (%s)", self._channel, self._config.upload_mode)

    async def process(self, frame: bytes) -> None:
        if self._closing or self._out.error is not None:
            return
        self._pending += frame
        while len(self._pending) >= self._chunk_bytes:
            chunk = bytes(self._pending[: self._chunk_bytes])
            del self._pending[: self._chunk_bytes]
            self._enqueue(self._to_wav(chunk, last=False))

    def frames(self) -> AsyncIterator[bytes]:
        return aiter(self._out)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            await asyncio.wait_for(self._finish(), timeout=CLOSE_TIMEOUT)
        except (TimeoutError, ProcessorError, socketio.exceptions.SocketIOError) as exc:
            logger.debug("channel=%s Speaqr close: %s", self._channel, exc.__class__.__name__)
        finally:
            if self._uploader is not None:
                self._uploader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._uploader
            for task in list(self._background):
                task.cancel()
            await self._disconnect()
            self._out.close()
            logger.info(
                "channel=%s Speaqr session closed: %d chunks up, %d dropped, %d utterances down",
                self._channel,
                self.uploaded_chunks,
                self.dropped_chunks,
                self.received_utterances,
            )

    # --- uplink -----------------------------------------------------------------------

    def _to_wav(self, ulaw: bytes, *, last: bool) -> bytes:
        pcm = ulaw_to_pcm(ulaw)
        pcm = self._resampler.process(pcm, last=last)
        return pcm16_wav(pcm, self._config.upload_sample_rate)

    def _enqueue(self, wav: bytes | None) -> None:
        if self._uploads.full():
            self._uploads.get_nowait()
            self.dropped_chunks += 1
        self._uploads.put_nowait(wav)

    async def _upload_loop(self) -> None:
        try:
            while True:
                wav = await self._uploads.get()
                if wav is None:
                    return
                stall = self._config.stall_timeout
                if self._streaming:
                    await self._call("write_stream", self._wire.write_stream(wav), ack_within=stall)
                else:
                    data = self._wire.send_audio(self._params, wav, end=False)
                    await self._call("send_audio", data, ack_within=stall)
                self.uploaded_chunks += 1
        except ProcessorError as exc:
            self._fail(exc)

    async def _finish(self) -> None:
        """Flush what is buffered and tell Speaqr the stream ended."""
        if self._uploader is None or self._out.error is not None:
            return
        tail = self._to_wav(bytes(self._pending), last=True)
        self._pending.clear()
        if self._streaming:
            self._enqueue(None)
            await self._uploader
            await self._call("write_stream", self._wire.write_stream(tail))
            await self._call("disconnect_stream", {})
        else:
            self._enqueue(None)
            await self._uploader
            await self._call("send_audio", self._wire.send_audio(self._params, tail, end=True))

    async def _call(self, event_key: str, data: Any, *, ack_within: float | None = None) -> None:
        """Emit ``event_key`` and wait for its acknowledgement (``ack_timeout`` by default)."""
        client = self._client
        if client is None or not client.connected:
            raise ProcessorError("Speaqr connection lost")
        event = self._wire.event(event_key)
        wait = self._config.ack_timeout if ack_within is None else ack_within
        try:
            ack = await client.call(event, data, timeout=wait)
        except socketio.exceptions.TimeoutError as exc:
            raise ProcessorError(f"Speaqr did not acknowledge {event} within {wait:g} s") from exc
        except socketio.exceptions.SocketIOError as exc:
            raise ProcessorError(f"Speaqr {event} failed: {exc.__class__.__name__}") from exc
        result = self._wire.parse_ack(ack)
        if not result.ok:
            raise ProcessorError(f"Speaqr refused {event}: {result.code} {result.description}")

    # --- downlink ---------------------------------------------------------------------

    def _register_handlers(self, client: socketio.AsyncClient) -> None:
        wire = self._wire
        client.on(wire.event("text_to_speech"), self._on_tts)
        client.on(wire.event("speech_to_text"), self._on_info("speech_to_text"))
        client.on(wire.event("translation"), self._on_info("translation"))
        client.on(wire.event("error"), self._on_error)
        client.on(wire.event("server_disconnected"), self._on_server_disconnected)
        client.on("disconnect", self._on_disconnect)

    async def _on_tts(self, payload: Any = None) -> None:
        mp3 = self._wire.tts_audio(payload)
        if mp3 is None:
            logger.warning("channel=%s text_to_speech without MP3 audio", self._channel)
            return
        try:
            frames = await asyncio.to_thread(mp3_to_ulaw_frames, mp3)
        except ValueError as exc:
            logger.warning("channel=%s undecodable MP3 from Speaqr: %s", self._channel, exc)
            return
        self.received_utterances += 1
        for frame in frames:
            self._out.put(frame)

    def _on_info(self, kind: str) -> Any:
        async def handler(payload: Any = None) -> None:
            logger.debug("channel=%s Speaqr %s event", self._channel, kind)

        return handler

    async def _on_error(self, payload: Any = None) -> None:
        self._fail(ProcessorError(f"Speaqr error event: {self._wire.error_text(payload)}"))

    async def _on_server_disconnected(self, payload: Any = None) -> None:
        self._fail(ProcessorError("Speaqr reports its backend disconnected"))

    async def _on_disconnect(self, reason: Any = None) -> None:
        if not self._closing:
            self._fail(ProcessorError(f"Speaqr connection closed ({reason})"))

    def _fail(self, error: ProcessorError) -> None:
        if self._out.error is None and not self._closing:
            logger.warning("channel=%s %s", self._channel, error)
        self._out.fail(error)

    async def _disconnect(self) -> None:
        client = self._client
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), timeout=CLOSE_TIMEOUT)
        # A refused connect can leave the engine.io session half open; make sure it is gone.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.eio.disconnect(), timeout=CLOSE_TIMEOUT)
