"""Pure timing logic of the outbound RTP stream (no I/O): tested without sockets.

* :class:`Pacer` turns bursts of processor output into one frame per frame duration,
  never lagging its schedule by more than ``tolerance`` (so an idle period does not
  cause a catch-up burst afterwards).
* :class:`RtpRewriter` stamps each outbound frame with our own SSRC, consecutive
  sequence numbers, and a timestamp that grows by the frame's sample count; after a
  silence gap the timestamp jumps by the gap and the marker bit starts the talkspurt
  (RFC 3551 section 4.1).
"""

import secrets

from speaqr_sip.rtp import PAYLOAD_TYPE_PCMU, RtpPacket

CLOCK_RATE = 8000


class Pacer:
    def __init__(self, clock_rate: int = CLOCK_RATE, tolerance: float = 0.04) -> None:
        self._rate = clock_rate
        self._tolerance = tolerance
        self._due: float | None = None

    def send_time(self, now: float, samples: int) -> float:
        """When to send a frame of ``samples`` that is ready at ``now``."""
        due = now if self._due is None else max(self._due, now - self._tolerance)
        send_at = max(now, due)
        self._due = due + samples / self._rate
        return send_at


class RtpRewriter:
    def __init__(
        self,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        payload_type: int = PAYLOAD_TYPE_PCMU,
        clock_rate: int = CLOCK_RATE,
    ) -> None:
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self._seq = secrets.randbits(16) if sequence is None else sequence
        self._next_ts = secrets.randbits(32) if timestamp is None else timestamp
        self._pt = payload_type
        self._rate = clock_rate
        self._media_end: float | None = None

    def packet(self, payload: bytes, send_at: float) -> RtpPacket:
        samples = len(payload)
        marker = self._media_end is None
        timestamp = self._next_ts
        if self._media_end is not None:
            gap = round((send_at - self._media_end) * self._rate)
            if gap > samples // 2:
                timestamp = (timestamp + gap) & 0xFFFFFFFF
                marker = True
        packet = RtpPacket(
            payload_type=self._pt,
            sequence_number=self._seq,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._next_ts = (timestamp + samples) & 0xFFFFFFFF
        start = send_at if self._media_end is None else max(send_at, self._media_end)
        self._media_end = start + samples / self._rate
        return packet
