"""A stand-in for Speaqr's real-time Socket.IO API, for tests on this machine and the appliance.

It speaks the protocol of :mod:`speaqr_sip.speaqr_wire` and answers every uploaded audio
chunk with a ``text_to_speech`` event whose MP3 is the same audio shifted up by
``--shift-hz`` (default 300 Hz): a 440 Hz tone sent through the adapter comes back as a
740 Hz tone and the 440 Hz component is gone, which a test checks with an FFT.

``python -m speaqr_sip.testing.fake_speaqr --port 8765 [--api-key KEY] [--shift-hz 300]``

The key it accepts comes from ``$SPEAQR_FAKE_SPEAQR_API_KEY`` when ``--api-key`` is not
given: a service passes it that way (systemd ``EnvironmentFile=``), so the key never sits on
the process's command line, which every local user can read in ``/proc/<pid>/cmdline``.

Failure knobs for fallback tests: ``--api-key`` (wrong key -> connect refused with
``bad_authentication``), ``--reject-language xx`` (``live.connect`` refused with
``source_language_not_supported``), ``--error-after-chunks N`` (an ``error`` event and a
disconnect after N chunks).
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lameenc
import numpy as np
import socketio
from aiohttp import web

from speaqr_sip.audio import PCMU_RATE, read_pcm16_wav, resample
from speaqr_sip.g711 import float_to_int16
from speaqr_sip.speaqr_wire import API_KEY_HEADER, AUTH_TOKEN_KEY, BAD_AUTHENTICATION, Wire
from speaqr_sip.testing.dsp import FrequencyShifter

logger = logging.getLogger(__name__)

MP3_BITRATE_KBPS = 48


@dataclass
class _Session:
    shifter: FrequencyShifter
    params: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0


@dataclass
class FakeSpeaqrStats:
    connections: int = 0
    refused_connections: int = 0
    sessions: int = 0
    chunks: int = 0
    utterances: int = 0
    last_params: dict[str, Any] = field(default_factory=dict)


class FakeSpeaqrServer:
    """Socket.IO server (aiohttp) that frequency-shifts the audio it receives."""

    def __init__(
        self,
        *,
        shift_hz: float = 300.0,
        api_key: str = "",
        out_rate: int = 24000,
        reject_languages: tuple[str, ...] = (),
        error_after_chunks: int = 0,
        stall_after_chunks: int = 0,
        wire: Wire | None = None,
    ) -> None:
        self.shift_hz = shift_hz
        self.api_key = api_key
        self.out_rate = out_rate
        self.reject_languages = reject_languages
        self.error_after_chunks = error_after_chunks
        # Stop acknowledging audio after this many chunks, connection kept (a hung Speaqr).
        self.stall_after_chunks = stall_after_chunks
        self.wire = wire or Wire()
        self.stats = FakeSpeaqrStats()
        self._sessions: dict[str, _Session] = {}
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp", logger=False, engineio_logger=False, cors_allowed_origins=[]
        )
        self.app = web.Application()
        self.sio.attach(self.app)
        self._runner: web.AppRunner | None = None
        self._register()

    # --- server life cycle ------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen and return the bound port."""
        self._runner = web.AppRunner(self.app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = int(self._runner.addresses[0][1])
        logger.info("fake Speaqr listening on %s:%d (shift %+.0f Hz)", host, bound, self.shift_hz)
        return bound

    async def stop(self) -> None:
        for sid in list(self._sessions):
            await self.sio.disconnect(sid)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- protocol ---------------------------------------------------------------------

    def _register(self) -> None:
        ev = self.wire.event
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(ev("live_connect"), self._on_live_connect)
        self.sio.on(ev("send_audio"), self._on_send_audio)
        self.sio.on(ev("connect_stream"), self._on_connect_stream)
        self.sio.on(ev("write_stream"), self._on_write_stream)
        self.sio.on(ev("disconnect_stream"), self._on_disconnect_stream)

    def _authorised(self, environ: Mapping[str, Any], auth: Any) -> bool:
        if not self.api_key:
            return True
        header = environ.get("HTTP_" + API_KEY_HEADER.upper().replace("-", "_"), "")
        token = auth.get(AUTH_TOKEN_KEY, "") if isinstance(auth, Mapping) else ""
        return self.api_key in (header, token)

    async def _on_connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        if not self._authorised(environ, auth):
            self.stats.refused_connections += 1
            raise socketio.exceptions.ConnectionRefusedError(
                {"code": BAD_AUTHENTICATION, "description": "invalid API key"}
            )
        self.stats.connections += 1
        self._sessions[sid] = _Session(FrequencyShifter(self.shift_hz, PCMU_RATE))
        await self.sio.emit(self.wire.event("server_connected"), {}, to=sid)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._sessions.pop(sid, None)

    async def _on_live_connect(self, sid: str, data: Any = None) -> dict[str, Any]:
        f = self.wire.name
        if not isinstance(data, Mapping):
            return self.wire.error_ack("invalid_data_provided", "session parameters missing")
        for key, code in (
            ("source_language", "source_language_not_supported"),
            ("target_language", "target_language_not_supported"),
        ):
            if data.get(f(key)) in self.reject_languages or not data.get(f(key)):
                return self.wire.error_ack(code, f"{f(key)} not supported")
        session = self._sessions.get(sid)
        if session is None:
            return self.wire.error_ack("socket_server_not_connected", "no session")
        session.params = dict(data)
        self.stats.sessions += 1
        self.stats.last_params = dict(data)
        return self.wire.ok_ack()

    async def _on_send_audio(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._audio(sid, data)

    async def _on_connect_stream(self, sid: str, data: Any = None) -> dict[str, Any]:
        return self.wire.ok_ack()

    async def _on_write_stream(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._audio(sid, data)

    async def _on_disconnect_stream(self, sid: str, data: Any = None) -> dict[str, Any]:
        return self.wire.ok_ack()

    async def _audio(self, sid: str, data: Any) -> dict[str, Any]:
        session = self._sessions.get(sid)
        if session is None or not session.params:
            return self.wire.error_ack("invalid_data_provided", "live.connect first")
        blob = data.get(self.wire.name("file")) if isinstance(data, Mapping) else None
        if not isinstance(blob, bytes | bytearray):
            return self.wire.error_ack("invalid_data_provided", "no audio file")
        try:
            pcm, rate = read_pcm16_wav(bytes(blob))
        except ValueError as exc:
            return self.wire.error_ack("bad_file", str(exc))
        session.chunks += 1
        self.stats.chunks += 1
        if self.stall_after_chunks and session.chunks > self.stall_after_chunks:
            await asyncio.Event().wait()
        if self.error_after_chunks and session.chunks > self.error_after_chunks:
            await self.sio.emit(
                self.wire.event("error"),
                self.wire.error_ack("processing_failed", "stand-in failure"),
                to=sid,
            )
            return self.wire.error_ack("processing_failed", "stand-in failure")
        if pcm.size:
            mp3 = await asyncio.to_thread(self._transform, session, pcm, rate)
            target = str(session.params.get(self.wire.name("target_language"), ""))
            await self.sio.emit(
                self.wire.event("text_to_speech"),
                self.wire.tts_event(target, "", mp3),
                to=sid,
            )
            self.stats.utterances += 1
        return self.wire.ok_ack()

    def _transform(self, session: _Session, pcm: np.ndarray[Any, Any], rate: int) -> bytes:
        at_8k = resample(pcm, rate, PCMU_RATE)
        shifted = session.shifter.process(at_8k.astype(np.float64) / 32768.0)
        out = resample(float_to_int16(shifted), PCMU_RATE, self.out_rate)
        return encode_mp3(out, self.out_rate)


def encode_mp3(samples: np.ndarray[Any, Any], rate: int) -> bytes:
    """A complete mono MP3 file (lameenc) holding ``samples``."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(MP3_BITRATE_KBPS)
    encoder.set_in_sample_rate(rate)
    encoder.set_out_sample_rate(rate)
    encoder.set_channels(1)
    encoder.set_quality(5)
    data = encoder.encode(np.asarray(samples, dtype="<i2").tobytes())
    return bytes(data) + bytes(encoder.flush())


async def _serve(args: argparse.Namespace) -> None:
    server = FakeSpeaqrServer(
        shift_hz=args.shift_hz,
        api_key=args.api_key,
        out_rate=args.out_rate,
        reject_languages=tuple(args.reject_language),
        error_after_chunks=args.error_after_chunks,
    )
    await server.start(args.host, args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


API_KEY_ENV = "SPEAQR_FAKE_SPEAQR_API_KEY"


def parse_args(
    argv: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Command-line options; the API key defaults to ``$SPEAQR_FAKE_SPEAQR_API_KEY``."""
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="speaqr-fake-speaqr", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shift-hz", type=float, default=300.0)
    parser.add_argument(
        "--api-key",
        default=env.get(API_KEY_ENV, ""),
        help=f"key clients must present (default: ${API_KEY_ENV}; empty accepts any)",
    )
    parser.add_argument("--out-rate", type=int, default=24000)
    parser.add_argument("--reject-language", action="append", default=[])
    parser.add_argument("--error-after-chunks", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
