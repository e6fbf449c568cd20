"""A stand-in carrier for the call service: a real SIP user agent on pjsua2 (PyPI ``pjsua2-python``).

The appliance's carrier trunk points at it. For every INVITE it records what a test wants to
know about the call the appliance placed (the number asked for, the caller-ID, when the INVITE
arrived), then behaves as told: answers and plays a tone while recording what it hears, or
answers busy, never answers, rejects, echoes, or answers and hangs up after a while.

Design notes
- One process = one pjsua2 library = at most 4 calls (the wheel's ``PJSUA_MAX_CALLS``); a fifth
  INVITE is answered 486 by pjsua itself (recorded as such in the state file).
- Plain SIP over UDP or TCP on ``--listen``, and SIP over TLS on ``--tls-listen`` with a
  certificate the appliance verifies (the production trunk). Media: RTP, or SDES SRTP with
  ``--srtp`` (``optional`` takes both, each call as its INVITE offers).
- ``uaConfig.threadCnt = 0``: no pjsip worker thread; the main loop polls ``libHandleEvents`` so
  every callback runs in the main thread, and the arrival time is taken the moment pjsip hands
  the INVITE to us. Times are ``time.perf_counter()`` (CLOCK_MONOTONIC): the same clock as the
  test client on the same host, so "INVITE sent by the caller" -> "INVITE at the carrier" is a
  plain subtraction. ``time.time()`` is recorded too.
- pjsua2 objects (calls, players, recorders) are created and destroyed in the main loop, never
  inside a callback; everything is destroyed before ``libDestroy()`` (else pjsua2 aborts).
- The state file (``--state``) is rewritten atomically after every change: ``{"ready", "pid",
  "listen", "transport", "calls": [...]}``; tests poll it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pjsua2 as pj

log = logging.getLogger("carrier")

MODES = ("answer", "busy", "noanswer", "reject", "echo", "hangup", "early")
# What a carrier answers after its early-media announcement ("number not in service").
EARLY_FINAL_STATUS = 404
CLOCK_RATE = 8000
SRTP_MODES = {
    "disabled": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}

_URI_USER = re.compile(r"<?\s*sips?:([^@;>\s]+)@", re.IGNORECASE)


def now_ms() -> float:
    return time.perf_counter() * 1000.0


@dataclass(frozen=True)
class Behaviour:
    """What the carrier does with one call: ``mode`` and its argument (reject code, hangup delay)."""

    mode: str = "answer"
    arg: str = ""

    @classmethod
    def parse(cls, text: str) -> Behaviour:
        mode, _, arg = text.partition(":")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: want one of {', '.join(MODES)}")
        if mode == "reject" and arg and not re.fullmatch(r"[3-6][0-9][0-9]", arg):
            raise ValueError(f"reject:{arg}: want a SIP status 300-699")
        if mode in ("hangup", "early"):
            try:
                if float(arg or "2") <= 0:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{mode}:{arg}: want seconds > 0") from None
        return cls(mode, arg)


@dataclass
class Rule:
    """Numbers ending in ``suffix`` (digits of the request URI user) get ``behaviour``."""

    suffix: str
    behaviour: Behaviour

    @classmethod
    def parse(cls, text: str) -> Rule:
        suffix, sep, rest = text.partition("=")
        if not sep or not re.fullmatch(r"[0-9]{1,15}", suffix):
            raise ValueError(f"bad rule {text!r}: want DIGITS=MODE[:ARG], e.g. 0486=busy")
        return cls(suffix, Behaviour.parse(rest))


@dataclass
class Options:
    listen_host: str
    listen_port: int
    transport: str = "udp"
    default: Behaviour = field(default_factory=Behaviour)
    rules: list[Rule] = field(default_factory=list)
    play: str | None = None
    record_dir: str | None = None
    state: str | None = None
    ring_ms: int = 100
    srtp: str = "disabled"
    # A SIP-over-TLS listener beside the main one: (host, port, certificate file, key file).
    tls: tuple[str, int, str, str] | None = None
    log_level: int = 1
    max_calls: int = 4

    def behaviour_for(self, number: str) -> Behaviour:
        digits = re.sub(r"[^0-9]", "", number)
        for rule in self.rules:
            if digits.endswith(rule.suffix):
                return rule.behaviour
        return self.default


def header_value(msg: str, *names: str) -> str | None:
    """First value of any of ``names`` (compact forms included) in a SIP message's header block."""
    head = msg.split("\r\n\r\n", 1)[0]
    wanted = {n.lower() for n in names}
    for line in head.split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in wanted:
            return value.strip()
    return None


def uri_user(value: str | None) -> str | None:
    """The user part of the first SIP URI in a header value (``"A" <sip:+34...@h>;tag=x`` -> ``+34...``)."""
    if not value:
        return None
    m = _URI_USER.search(value)
    return m.group(1) if m else None


def via_transport(value: str | None) -> str | None:
    """The transport of a Via header value (``SIP/2.0/TLS host;branch=...`` -> ``tls``)."""
    m = re.match(r"\s*SIP\s*/\s*2\.0\s*/\s*(\w+)", value or "", re.IGNORECASE)
    return m.group(1).lower() if m else None


def parse_invite(msg: str) -> dict:
    """What the carrier records about an INVITE: request URI and its user, From, P-Asserted-Identity."""
    first = msg.split("\r\n", 1)[0]
    parts = first.split()
    request_uri = parts[1] if len(parts) >= 3 else ""
    from_value = header_value(msg, "From", "f")
    pai_value = header_value(msg, "P-Asserted-Identity")
    return {
        "request_uri": request_uri,
        "number": uri_user(request_uri) or "",
        "from": from_value,
        "from_user": uri_user(from_value),
        "pai": pai_value,
        "pai_user": uri_user(pai_value),
        "call_id": header_value(msg, "Call-ID", "i"),
        "user_agent": header_value(msg, "User-Agent"),
        "sdp_crypto": "a=crypto:" in msg,
        "via_transport": via_transport(header_value(msg, "Via", "v")),
    }


class _LogWriter(pj.LogWriter):
    def write(self, entry):
        os.write(2, entry.msg.encode(errors="replace"))


class CarrierCall(pj.Call):
    """One incoming call; callbacks only record, the main loop acts."""

    def __init__(self, carrier: Carrier, acc: pj.Account, call_id: int, index: int, info: dict, behaviour: Behaviour):
        super().__init__(acc, call_id)
        self.carrier = carrier
        self.index = index
        self.info = info
        self.behaviour = behaviour
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.record_path: str | None = None
        self.t_arrived = info["arrived_ms"]
        self.t_ringing: float | None = None
        self.t_answered: float | None = None
        self.t_confirmed: float | None = None
        self.t_media: float | None = None
        self.t_disconnected: float | None = None
        self.answer_due: float | None = None
        self.hangup_due: float | None = None
        self.refuse_due: float | None = None  # early media: the final refusal
        self.t_early: float | None = None
        self.final_status: int | None = None
        self.disconnect_reason: str | None = None
        self.hung_up_by: str | None = None  # "carrier" or "remote"
        self.media_pending = False
        self.finished = False  # media released, nothing left to do
        self.rtp: dict = {}

    def onCallState(self, prm):
        ci = self.getInfo()
        t = now_ms()
        log.info("call %d %s (%s %s)", self.index, ci.stateText, ci.lastStatusCode, ci.lastReason)
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.t_confirmed = t
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.t_disconnected = t
            self.final_status = int(ci.lastStatusCode)
            self.disconnect_reason = ci.lastReason
            if self.hung_up_by is None:
                self.hung_up_by = "remote"
        self.carrier.dirty = True

    def onCallMediaState(self, prm):
        self.media_pending = True  # attach player/recorder from the main loop

    # --- main loop ---------------------------------------------------------------------
    def attach_media(self) -> None:
        self.media_pending = False
        if self.t_media is not None or self.t_disconnected is not None:
            return
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            aud = self.getAudioMedia(mi.index)
            opts = self.carrier.opts
            if opts.record_dir:
                safe = re.sub(r"[^0-9A-Za-z+]", "_", self.info["number"])[:32]
                self.record_path = str(Path(opts.record_dir) / f"call-{self.index:03d}-{safe}.wav")
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(self.record_path)
            if self.behaviour.mode == "echo":
                aud.startTransmit(aud)
            elif opts.play:
                self.player = pj.AudioMediaPlayer()
                self.player.createPlayer(opts.play, 0)  # loop until the call ends
            # Queued back to back: both start on the same conference-bridge tick.
            if self.player:
                self.player.startTransmit(aud)
            if self.recorder:
                aud.startTransmit(self.recorder)
            self.t_media = now_ms()
            self.carrier.dirty = True
            return

    def sample_rtp(self) -> None:
        if self.t_confirmed is None or self.t_disconnected is not None:
            return
        try:
            st = self.getStreamStat(0)
        except Exception:  # noqa: BLE001 - media may be gone
            return
        rc = st.rtcp
        self.rtp = {
            "tx_packets": int(rc.txStat.pkt),
            "rx_packets": int(rc.rxStat.pkt),
            "rx_lost": int(rc.rxStat.loss),
        }

    def release_media(self) -> None:
        for obj in (self.player, self.recorder):
            _destroy(obj)  # the recorder finalises its WAV header here
        self.player = None
        self.recorder = None

    def as_dict(self) -> dict:
        def span(a, b):
            return round(b - a, 3) if a is not None and b is not None else None

        d = dict(self.info)
        d.update(
            index=self.index,
            mode=self.behaviour.mode,
            mode_arg=self.behaviour.arg,
            ringing_ms=self.t_ringing,
            early_media_ms=self.t_early,
            answered_ms=self.t_answered,
            confirmed_ms=self.t_confirmed,
            media_ms=self.t_media,
            disconnected_ms=self.t_disconnected,
            arrival_to_disconnect_ms=span(self.t_arrived, self.t_disconnected),
            connected_s=round((self.t_disconnected - self.t_confirmed) / 1000.0, 3)
            if self.t_confirmed and self.t_disconnected
            else None,
            final_status=self.final_status,
            disconnect_reason=self.disconnect_reason,
            hung_up_by=self.hung_up_by,
            record=self.record_path,
            rtp=self.rtp,
            ended=self.t_disconnected is not None,
        )
        return d


class OutboundCall(pj.Call):
    """One INVITE the carrier sends to the appliance (``--invite``): only its outcome matters."""

    def __init__(self, acc: pj.Account):
        super().__init__(acc)
        self.status: int | None = None
        self.reason: str | None = None
        self.connected = False
        self.disconnected = False

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.connected = True
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.status = int(ci.lastStatusCode)
            self.reason = ci.lastReason


class _Account(pj.Account):
    def __init__(self, carrier: Carrier):
        super().__init__()
        self.carrier = carrier

    def onIncomingCall(self, prm):
        self.carrier.on_incoming(self, prm)


class Carrier:
    def __init__(self, opts: Options):
        self.opts = opts
        self.ep: pj.Endpoint | None = None
        self.acc: _Account | None = None
        self.calls: list[CarrierCall] = []
        self.refused: list[dict] = []  # INVITEs we could not take (e.g. over the call limit)
        self.dirty = True
        self._log_writer = None
        self.started_at = time.time()

    # --- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        o = self.opts
        ep = self.ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = o.max_calls
        cfg.uaConfig.userAgent = "speaqr-sip stand-in carrier (pjsua2)"
        self._log_writer = _LogWriter()
        cfg.logConfig.writer = self._log_writer
        cfg.logConfig.level = o.log_level
        cfg.logConfig.consoleLevel = o.log_level
        cfg.logConfig.msgLogging = o.log_level >= 4
        m = cfg.medConfig
        m.clockRate = CLOCK_RATE
        m.sndClockRate = CLOCK_RATE
        m.channelCount = 1
        m.audioFramePtime = 10
        m.ptime = 20
        m.noVad = True
        m.ecTailLen = 0
        ep.libInit(cfg)

        tcfg = pj.TransportConfig()
        tcfg.port = o.listen_port
        tcfg.boundAddress = o.listen_host
        tcfg.publicAddress = o.listen_host
        kind = pj.PJSIP_TRANSPORT_UDP if o.transport == "udp" else pj.PJSIP_TRANSPORT_TCP
        tid = ep.transportCreate(kind, tcfg)
        if o.tls:
            self._tls_transport(*o.tls)
        ep.libStart()
        ep.audDevManager().setNullDev()
        self._only_pcmu()

        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:carrier@{o.listen_host}:{o.listen_port}"
        acfg.regConfig.registrarUri = ""
        acfg.regConfig.registerOnAdd = False
        if not o.tls:
            # Outgoing requests (--invite) leave from --listen. With a TLS listener too, contacts
            # must follow the transport each INVITE came on, so the account is bound to none.
            acfg.sipConfig.transportId = tid
        acfg.natConfig.iceEnabled = False
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.mediaConfig.srtpUse = SRTP_MODES[o.srtp]
        acfg.mediaConfig.srtpSecureSignaling = 0
        acfg.mediaConfig.transportConfig.boundAddress = o.listen_host
        acfg.mediaConfig.transportConfig.port = 30000
        acfg.mediaConfig.transportConfig.portRange = 10000
        acfg.mediaConfig.transportConfig.randomizePort = True
        self.acc = _Account(self)
        self.acc.create(acfg, True)
        log.info("listening on %s:%d/%s", o.listen_host, o.listen_port, o.transport)
        if o.tls:
            log.info("listening on %s:%d/tls", o.tls[0], o.tls[1])

    def _tls_transport(self, host: str, port: int, cert_file: str, key_file: str) -> int:
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = host
        tcfg.publicAddress = host
        tls = tcfg.tlsConfig
        tls.certFile = cert_file
        tls.privKeyFile = key_file
        tls.method = pj.PJSIP_TLSV1_2_METHOD
        tls.verifyClient = False
        tls.requireClientCert = False
        return self.ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)

    def _only_pcmu(self) -> None:
        for ci in self.ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            self.ep.codecSetPriority(ci.codecId, 255 if name == "PCMU" else 0)

    def stop(self) -> None:
        if self.ep is None:
            return
        try:
            live = [c for c in self.calls if c.t_disconnected is None and not c.finished]
            for c in live:
                c.hung_up_by = c.hung_up_by or "carrier"
                try:
                    c.hangup(pj.CallOpParam(True))
                except Exception as exc:  # noqa: BLE001
                    log.info("hangup at stop: %s", exc)
            deadline = time.monotonic() + 3
            while live and time.monotonic() < deadline and any(c.t_disconnected is None for c in live):
                self.ep.libHandleEvents(10)
            for c in self.calls:
                if not c.finished:
                    c.release_media()
            self.write_state(final=True)
            for c in self.calls:
                if not c.finished:
                    c.finished = True
                    _destroy(c)
            self.calls.clear()
            if self.acc is not None:
                try:
                    self.acc.shutdown()
                except Exception as exc:  # noqa: BLE001
                    log.info("account shutdown: %s", exc)
                _destroy(self.acc)
                self.acc = None
            gc.collect()
        finally:
            self.ep.libDestroy()
            self.ep = None
            self._log_writer = None
            gc.collect()

    # --- calls -----------------------------------------------------------------------
    def on_incoming(self, acc: _Account, prm) -> None:
        t = now_ms()
        info = parse_invite(prm.rdata.wholeMsg)
        info.update(arrived_ms=round(t, 3), arrived_unix=round(time.time(), 6), source=prm.rdata.srcAddress)
        behaviour = self.opts.behaviour_for(info["number"])
        call = CarrierCall(self, acc, prm.callId, len(self.calls), info, behaviour)
        self.calls.append(call)
        log.info(
            "INVITE %d for %s from %s (PAI %s): %s",
            call.index,
            info["number"],
            info["from_user"],
            info["pai_user"],
            behaviour,
        )
        op = pj.CallOpParam(True)
        try:
            if behaviour.mode in ("busy", "reject"):
                op.statusCode = 486 if behaviour.mode == "busy" else int(behaviour.arg or 403)
                call.hung_up_by = "carrier"
                call.hangup(op)
            elif behaviour.mode == "early":
                # 183 with SDP: the tone plays as early media (an announcement), then 404.
                op.statusCode = 183
                call.answer(op)
                call.t_early = now_ms()
                call.refuse_due = time.monotonic() + float(behaviour.arg or "2")
            else:
                op.statusCode = 180
                call.answer(op)
                call.t_ringing = now_ms()
                if behaviour.mode != "noanswer":
                    call.answer_due = time.monotonic() + self.opts.ring_ms / 1000.0
        except pj.Error as exc:
            log.warning("call %d: could not respond (%s)", call.index, exc.info())
        self.dirty = True

    def tick(self) -> None:
        """Timers and media set-up, in the main loop."""
        mono = time.monotonic()
        for c in self.calls:
            if c.finished:
                continue
            if c.t_disconnected is not None:
                # Done: finalise the recording and delete the pjsua2 call now (the standard
                # pjsua2 pattern), so its slot is free and nothing touches it again.
                c.release_media()
                c.finished = True
                _destroy(c)
                self.dirty = True
                continue
            if c.answer_due is not None and mono >= c.answer_due:
                c.answer_due = None
                op = pj.CallOpParam(True)
                op.statusCode = 200
                try:
                    c.answer(op)
                    c.t_answered = now_ms()
                    if c.behaviour.mode == "hangup":
                        c.hangup_due = mono + float(c.behaviour.arg or "2")
                except pj.Error as exc:
                    log.info("answer failed (caller gone?): %s", exc.info())
                self.dirty = True
            if c.media_pending:
                c.attach_media()
            if c.refuse_due is not None and mono >= c.refuse_due:
                c.refuse_due = None
                c.hung_up_by = "carrier"
                op = pj.CallOpParam(True)
                op.statusCode = EARLY_FINAL_STATUS
                try:
                    c.hangup(op)
                except pj.Error as exc:
                    log.info("refusal after early media failed: %s", exc.info())
                self.dirty = True
            if c.hangup_due is not None and mono >= c.hangup_due:
                c.hangup_due = None
                c.hung_up_by = "carrier"
                c.sample_rtp()
                try:
                    c.hangup(pj.CallOpParam(True))
                except pj.Error as exc:
                    log.info("hangup failed: %s", exc.info())
                self.dirty = True
            if c.t_confirmed is not None and c.t_disconnected is None:
                c.sample_rtp()

    def invite(self, uri: str, headers: list[tuple[str, str]], timeout_s: float = 15.0) -> dict:
        """Send one INVITE to ``uri`` from the carrier's own address and report the outcome; an
        answered call is hung up at once (the appliance must never answer a carrier)."""
        call = OutboundCall(self.acc)
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        for name, value in headers:
            h = pj.SipHeader()
            h.hName = name
            h.hValue = value
            prm.txOption.headers.append(h)
        t0 = now_ms()
        try:
            call.makeCall(uri, prm)
            deadline = time.monotonic() + timeout_s
            while not call.disconnected and time.monotonic() < deadline:
                self.ep.libHandleEvents(10)
                if call.connected:
                    call.hangup(pj.CallOpParam(True))
                    self.ep.libHandleEvents(10)
            result = {
                "uri": uri,
                "status": call.status if call.disconnected else None,
                "reason": call.reason if call.disconnected else "no final response (client timeout)",
                "connected": call.connected,
                "elapsed_ms": round(now_ms() - t0, 3),
            }
            if not call.disconnected:
                call.hangup(pj.CallOpParam(True))
                self.ep.libHandleEvents(50)
            return result
        finally:
            _destroy(call)

    def run(self, should_stop) -> None:
        self.write_state()
        last_write = 0.0
        while not should_stop():
            self.ep.libHandleEvents(10)
            self.tick()
            mono = time.monotonic()
            if self.dirty or mono - last_write > 1.0:
                self.write_state()
                last_write = mono
                self.dirty = False

    # --- state -----------------------------------------------------------------------
    def write_state(self, final: bool = False) -> None:
        if not self.opts.state:
            return
        o = self.opts
        state = {
            "ready": not final,
            "stopped": final,
            "pid": os.getpid(),
            "listen": f"{o.listen_host}:{o.listen_port}",
            "transport": o.transport,
            "tls_listen": f"{o.tls[0]}:{o.tls[1]}" if o.tls else None,
            "default_mode": o.default.mode,
            "rules": {r.suffix: f"{r.behaviour.mode}:{r.behaviour.arg}".rstrip(":") for r in o.rules},
            "started_unix": self.started_at,
            "now_ms": round(now_ms(), 3),
            "calls": [c.as_dict() for c in self.calls],
        }
        tmp = Path(f"{o.state}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(o.state)


def _destroy(obj) -> None:
    if obj is None:
        return
    try:
        if obj.thisown:
            type(obj).__swig_destroy__(obj)
    except Exception as exc:  # noqa: BLE001
        log.info("destroy %s: %s", type(obj).__name__, exc)
