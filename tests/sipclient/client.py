"""A real SIP user agent for the tests, built on pjsua2 (PyPI ``pjsua2-python``).

One ``Session`` = one pjsua2 library instance = one process (pjsua2 is a
process-wide singleton; the wheel allows 4 calls per process, so tests that
need more concurrency start several processes).

Design notes
- Signalling: SIP over TLS 1.2 only. The client listens on an ephemeral TLS
  port and sends every request through the route ``sip:<server>;transport=tls;lr``
  so ``--server`` is the address actually contacted while the request URIs and
  the identity use ``--domain``.
- Server certificate: verified against ``--ca`` unless ``--no-verify-server``.
  pjsip checks the chain and compares the certificate's names with the host it
  connected to (the ``--server`` host, or ``--tls-name`` which is resolved to
  the address of ``--server`` by ``tls_name`` handling in the CLI).
- ``TCP_NODELAY`` is set through ``TlsConfig.sockOptParams`` (pjsip applies the
  list to the TLS socket right after creating it), so small SIP messages are
  not held back by Nagle's algorithm.
- Threads: ``uaConfig.threadCnt = 0``: no pjsip worker thread; the main thread
  polls ``libHandleEvents`` so every Python callback runs in the main thread
  and timestamps taken there are the moments pjsip handled the message.
  Media (RTP, conference bridge clock of the null sound device) runs in
  pjmedia's own threads.
- Audio: the null sound device drives an 8 kHz conference bridge; the echo
  canceller is off (it would cancel the echo we measure) and VAD is off (RTP
  flows continuously, which the "call stays up" checks rely on).
- Teardown: every Call, player, recorder and the Account is deleted before
  ``libDestroy()``; otherwise pjsua2 aborts the process at exit.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pjsua2 as pj

log = logging.getLogger("sipclient")

SRTP_MODES = {
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "disabled": pj.PJMEDIA_SRTP_DISABLED,
}
SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"
CLOCK_RATE = 8000


def now_ms() -> float:
    return time.perf_counter() * 1000.0


@dataclass
class Options:
    server: str  # host[:port] contacted over TLS (default port 5061)
    domain: str  # SIP domain: identity sip:user@domain, registrar, request URIs
    user: str
    password: str
    ca: str | None = None  # CA file the server certificate is verified against
    verify_server: bool = True
    srtp: str = "mandatory"
    codec: str = "PCMU"
    log_level: int = 1  # pjsip log level written to stderr (0..6)
    max_calls: int = 4
    tls_timeout_ms: int = 5000
    tcp_nodelay: bool = True  # False only to demonstrate what Nagle costs
    reg_timeout_s: float = 10.0
    reg_expires_s: int = 300  # registration lifetime asked for; pjsua refreshes it before it ends
    stun: str | None = None  # STUN server host:port for the media address of the SDP offer
    media_address: str | None = None  # address advertised in the SDP offer instead of the real one

    @property
    def server_hostport(self) -> str:
        host = self.server
        if host.startswith("["):  # [v6]:port
            return host if "]:" in host else f"{host}:5061"
        return host if ":" in host else f"{host}:5061"


_TP_STATES = {
    pj.PJSIP_TP_STATE_CONNECTED: "connected",
    pj.PJSIP_TP_STATE_DISCONNECTED: "disconnected",
    pj.PJSIP_TP_STATE_SHUTDOWN: "shutdown",
    pj.PJSIP_TP_STATE_DESTROY: "destroy",
}


class _LogWriter(pj.LogWriter):
    """Send pjsip's log to stderr (never stdout: stdout carries the JSON result)."""

    def write(self, entry):
        os.write(2, entry.msg.encode(errors="replace"))


class _Endpoint(pj.Endpoint):
    def __init__(self):
        super().__init__()
        self.transport_events: list[dict] = []

    def onTransportState(self, prm):
        ev = {
            "t_ms": round(now_ms(), 3),
            "state": _TP_STATES.get(prm.state, str(prm.state)),
            "type": prm.type,
        }
        if prm.lastError:
            ev["error"] = _strerror(self, prm.lastError)
        ti = prm.tlsInfo
        if ti is not None and not ti.isEmpty():
            ev["tls"] = {
                "established": bool(ti.established),
                "protocol": ti.protocol,
                "cipher": ti.cipherName,
                "verify_status": ti.verifyStatus,
                "verify_msgs": list(ti.verifyMsgs),
            }
            try:
                ev["tls"]["peer_subject"] = ti.remoteCertInfo.subjectCn
            except Exception as exc:  # noqa: BLE001 - informative only
                log.debug("no peer certificate info: %s", exc)
        log.info("transport %s", ev)
        self.transport_events.append(ev)


def _strerror(ep, status: int) -> str:
    try:
        return ep.utilStrError(status)
    except Exception:  # noqa: BLE001
        return f"pj_status {status}"


class _Account(pj.Account):
    def __init__(self):
        super().__init__()
        self.reg_result: dict | None = None
        self.t_reg_start: float | None = None
        self.registrations_ok = 0  # the first REGISTER and every refresh the registrar accepted

    def onRegState(self, prm):
        t = now_ms()
        self.reg_result = {
            "status": int(prm.code),
            "reason": prm.reason,
            "expiration": int(prm.expiration),
            "pj_status": int(prm.status),
            "elapsed_ms": round(t - self.t_reg_start, 3) if self.t_reg_start else None,
        }
        if int(prm.code) // 100 == 2 and int(prm.expiration) > 0:
            self.registrations_ok += 1
        log.info("registration %s", self.reg_result)


class _Call(pj.Call):
    """One outgoing call with its own player and recorder."""

    def __init__(
        self, session: Session, acc: _Account, index: int, play: str | None, record: str | None, loop_play: bool = False
    ):
        super().__init__(acc)
        self.session = session
        self.index = index
        self.play_path = play
        self.record_path = record
        self.loop_play = loop_play
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.invite_tx_ms: list[float] = []
        self.t_make: float | None = None
        self.t_200: float | None = None
        self.t_confirmed: float | None = None
        self.t_media: float | None = None
        self.early_media = False
        self.t_disconnected: float | None = None
        self.final_status: int | None = None
        self.final_reason: str | None = None
        self.answer_sdp: str | None = None
        self.offer_sdp: str | None = None
        self.connected = False
        self.disconnected = False
        self.call_id: str | None = None
        self.last_rtp: dict = {}
        self.rtp_samples: list[tuple[float, int, int]] = []  # (t_ms, tx_pkt, rx_pkt)
        self.codec: str | None = None
        self.errors: list[str] = []
        self.local_hangup = False

    # --- pjsua2 callbacks (main thread) ---------------------------------
    def onCallTsxState(self, prm):
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        ts = e.body.tsxState
        tsx = ts.tsx
        if tsx.method != "INVITE" or tsx.role != pj.PJSIP_ROLE_UAC:
            return
        t = now_ms()
        if ts.type == pj.PJSIP_EVENT_TX_MSG and tsx.state == pj.PJSIP_TSX_STATE_CALLING:
            self.invite_tx_ms.append(t)
        elif ts.type == pj.PJSIP_EVENT_RX_MSG:
            code = int(tsx.statusCode)
            if code >= 200:
                self.final_status = code
                self.final_reason = tsx.statusText
                if 200 <= code < 300 and self.t_200 is None:
                    self.t_200 = t
                    try:
                        msg = ts.src.rdata.wholeMsg
                        self.answer_sdp = msg.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in msg else None
                    except Exception as exc:  # noqa: BLE001
                        log.debug("no answer SDP: %s", exc)

    def onCallSdpCreated(self, prm):
        if self.offer_sdp is None:
            self.offer_sdp = prm.sdp.wholeSdp

    def onCallState(self, prm):
        ci = self.getInfo()
        t = now_ms()
        self.call_id = ci.callIdString or self.call_id
        log.info("call %d state %s (%s %s)", self.index, ci.stateText, ci.lastStatusCode, ci.lastReason)
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.connected = True
            self.t_confirmed = t
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            self.t_disconnected = t
            if self.final_status is None:
                self.final_status = int(ci.lastStatusCode)
                self.final_reason = ci.lastReason

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            if self.t_media is not None:
                continue
            aud = self.getAudioMedia(mi.index)
            # Queue player->call and call->recorder back to back: since pjsip 2.14 the
            # conference bridge applies queued connections at its next tick, so both
            # start on the same 10 ms frame and the recording's t=0 is the send t=0.
            if self.play_path:
                self.player = pj.AudioMediaPlayer()
                self.player.createPlayer(self.play_path, 0 if self.loop_play else pj.PJMEDIA_FILE_NO_LOOP)
            if self.record_path:
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(self.record_path)
            if self.player:
                self.player.startTransmit(aud)
            if self.recorder:
                aud.startTransmit(self.recorder)
            self.t_media = now_ms()
            # Media before any final answer: a 183 with SDP (early media).
            self.early_media = ci.state == pj.PJSIP_INV_STATE_EARLY
            try:
                si = self.getStreamInfo(mi.index)
                self.codec = f"{si.codecName}/{si.codecClockRate}"
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"stream info: {exc}")

    # --- helpers ---------------------------------------------------------
    def sample_rtp(self) -> None:
        if not self.connected or self.disconnected:
            return
        try:
            st = self.getStreamStat(0)
        except Exception:  # noqa: BLE001 - media may be gone
            return
        rc = st.rtcp
        self.last_rtp = {
            "tx_packets": int(rc.txStat.pkt),
            "rx_packets": int(rc.rxStat.pkt),
            "rx_lost": int(rc.rxStat.loss),
            "rx_discarded": int(rc.rxStat.discard),
            "rx_jitter_ms_mean": round(rc.rxStat.jitterUsec.mean / 1000.0, 3) if rc.rxStat.jitterUsec.n else None,
            "rtt_ms_last": round(rc.rttUsec.last / 1000.0, 3) if rc.rttUsec.n else None,
        }
        try:
            # Where the received RTP came from, and where this client sends it (the SDP answer's
            # address, or the one pjmedia latched onto).
            self.last_rtp["source"] = self.getMedTransportInfo(0).srcRtpName or None
            self.last_rtp["sent_to"] = self.getStreamInfo(0).remoteRtpAddress or None
        except Exception as exc:  # noqa: BLE001 - media may be gone
            log.debug("no media transport info: %s", exc)
        self.rtp_samples.append((now_ms(), self.last_rtp["tx_packets"], self.last_rtp["rx_packets"]))
        if len(self.rtp_samples) > 200:
            del self.rtp_samples[:100]

    def rx_packets_during(self, window_ms: float) -> int | None:
        """RX packets counted over the last ``window_ms`` of samples (None without samples)."""
        if len(self.rtp_samples) < 2:
            return None
        t_end, _, rx_end = self.rtp_samples[-1]
        older = [s for s in self.rtp_samples if s[0] <= t_end - window_ms]
        base = older[-1] if older else self.rtp_samples[0]
        return rx_end - base[2]

    def release_media(self) -> None:
        """Drop the player and recorder; pjsua2 destroys their ports (the recorder
        finalises its WAV header) when the last reference goes."""
        self.player = None
        self.recorder = None

    @property
    def ended_by(self) -> str | None:
        if not self.disconnected:
            return None
        return "local" if self.local_hangup else "remote"

    def result(self) -> dict:
        def span(a, b):
            return round(b - a, 3) if a is not None and b is not None else None

        res = {
            "index": self.index,
            "status": self.final_status,
            "reason": self.final_reason,
            "connected": self.connected,
            "call_id": self.call_id,
            "invite_to_200_ms": span(self.invite_tx_ms[-1] if self.invite_tx_ms else None, self.t_200),
            "first_invite_to_200_ms": span(self.invite_tx_ms[0] if self.invite_tx_ms else None, self.t_200),
            "invites_sent": len(self.invite_tx_ms),
            "make_to_confirmed_ms": span(self.t_make, self.t_confirmed),
            "duration_s": round((self.t_disconnected - self.t_confirmed) / 1000.0, 3)
            if self.t_confirmed and self.t_disconnected
            else None,
            "codec": self.codec,
            "early_media": self.early_media,
            "media": _sdp_summary(self.answer_sdp),
            "offer": _sdp_summary(self.offer_sdp),
            "rtp": self.last_rtp,
            "play": self.play_path,
            "record": self.record_path,
            # Absolute time.perf_counter() milliseconds (CLOCK_MONOTONIC, comparable with other
            # processes on this host, e.g. the stand-in carrier's arrival times).
            "invites_sent_at_ms": [round(t, 3) for t in self.invite_tx_ms],
            "final_response_at_ms": round(self.t_200, 3) if self.t_200 is not None else None,
            "disconnected_at_ms": round(self.t_disconnected, 3) if self.t_disconnected is not None else None,
            # Who ended the call: "local" (this client hung up) or "remote" (BYE/CANCEL/refusal).
            "ended_by": self.ended_by,
        }
        if self.errors:
            res["errors"] = self.errors
        return res


def _sdp_summary(sdp: str | None) -> dict | None:
    """What the answer SDP offered for audio: transport profile, codecs, crypto suites (no keys),
    and the addresses it names (``o=`` and every ``c=``)."""
    if not sdp:
        return None
    out: dict = {"profile": None, "payloads": [], "rtpmap": [], "crypto": [], "origin": None, "connection": []}
    for line in sdp.splitlines():
        if line.startswith("o="):
            parts = line.split()
            out["origin"] = parts[-1] if len(parts) >= 6 else None
        elif line.startswith("c="):
            out["connection"].append(line.split()[-1])
        elif line.startswith("m=audio"):
            parts = line.split()
            out["profile"] = parts[2] if len(parts) > 2 else None
            out["payloads"] = parts[3:]
        elif line.startswith("a=rtpmap:"):
            out["rtpmap"].append(line.split(" ", 1)[1] if " " in line else line)
        elif line.startswith("a=crypto:"):
            parts = line.split()
            if len(parts) > 1:
                out["crypto"].append(parts[1])
    return out


class Session:
    """A pjsua2 library instance with one TLS transport and one account."""

    def __init__(self, opts: Options):
        self.opts = opts
        self.ep: _Endpoint | None = None
        self.acc: _Account | None = None
        self.calls: list[_Call] = []
        self.tls_transport_id: int | None = None
        self.nodelay = False
        self._log_writer = None

    # --- life cycle ------------------------------------------------------
    def start(self) -> None:
        o = self.opts
        ep = self.ep = _Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = o.max_calls
        cfg.uaConfig.userAgent = "speaqr-sip-tests (pjsua2)"
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
        tcfg.port = 0
        tls = tcfg.tlsConfig
        tls.method = pj.PJSIP_TLSV1_2_METHOD
        if o.ca:
            tls.CaListFile = o.ca
        tls.verifyServer = bool(o.verify_server)
        tls.msecTimeout = o.tls_timeout_ms
        if o.tcp_nodelay:
            sop = pj.SockOpt()
            sop.level = socket.IPPROTO_TCP
            sop.optName = socket.TCP_NODELAY
            sop.setOptValInt(1)
            tls.sockOptParams.sockOpts.append(sop)
            tls.sockOptIgnoreError = False
        self.nodelay = o.tcp_nodelay
        self.tls_transport_id = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
        ep.libStart()
        if o.stun:
            # Resolve the STUN server before any call: media transports created earlier would
            # advertise the private address.
            servers = pj.StringVector()
            servers.append(o.stun)
            ep.natUpdateStunServers(servers, True)
        ep.audDevManager().setNullDev()
        self._select_codec(o.codec)

    def _select_codec(self, name: str) -> None:
        wanted = None
        for ci in self.ep.codecEnum2():
            if ci.codecId.split("/")[0].upper() == name.upper() and wanted is None:
                wanted = ci.codecId
            self.ep.codecSetPriority(ci.codecId, 0)
        if wanted is None:
            raise ValueError(f"codec {name} not available in pjsua2")
        self.ep.codecSetPriority(wanted, 255)
        log.info("only codec enabled: %s", wanted)

    def create_account(self, register: bool) -> _Account:
        o = self.opts
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{o.user}@{o.domain}"
        acfg.regConfig.registrarUri = f"sip:{o.domain};transport=tls" if register else ""
        acfg.regConfig.registerOnAdd = bool(register)
        acfg.regConfig.retryIntervalSec = 0
        acfg.regConfig.timeoutSec = o.reg_expires_s
        acfg.regConfig.dropCallsOnFail = False
        acfg.sipConfig.proxies.append(f"sip:{o.server_hostport};transport=tls;lr")
        acfg.sipConfig.transportId = self.tls_transport_id
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", o.user, 0, o.password))
        acfg.natConfig.iceEnabled = False
        # SIP runs over TLS (STUN does not apply to it): Via received/rport and the appliance's
        # contact rewriting handle its NAT. STUN, when given, maps the RTP port for the SDP offer.
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DEFAULT if o.stun else pj.PJSUA_STUN_USE_DISABLED
        acfg.mediaConfig.srtpUse = SRTP_MODES[o.srtp]
        acfg.mediaConfig.srtpSecureSignaling = 0
        if o.srtp != "disabled":
            crypto = pj.SrtpCrypto()
            crypto.name = SRTP_SUITE
            acfg.mediaConfig.srtpOpt.cryptos.append(crypto)
            acfg.mediaConfig.srtpOpt.keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
        acfg.mediaConfig.transportConfig.port = 20000
        acfg.mediaConfig.transportConfig.portRange = 20000
        acfg.mediaConfig.transportConfig.randomizePort = True
        if o.media_address:
            acfg.mediaConfig.transportConfig.publicAddress = o.media_address
        acc = self.acc = _Account()
        acc.t_reg_start = now_ms()
        acc.create(acfg)
        return acc

    def poll(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)

    def wait_for(self, predicate, timeout_s: float, step_ms: int = 10) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            self.poll(step_ms)
        return True

    def hangup_all(self, timeout_s: float = 5.0) -> None:
        live = [c for c in self.calls if not c.disconnected]
        for c in live:
            c.sample_rtp()
            c.local_hangup = True
            try:
                c.hangup(pj.CallOpParam(True))
            except Exception as exc:  # noqa: BLE001
                log.info("hangup: %s", exc)
        if live:
            self.wait_for(lambda: all(c.disconnected for c in live), timeout_s)

    def stop(self) -> None:
        """Hang up, destroy every pjsua2 object, then the library.

        Python may still hold references (a caller's list, a traceback), so the
        C++ objects are deleted explicitly here rather than left to the garbage
        collector: a Call, player, recorder or Account destroyed after
        ``libDestroy()`` aborts the process.
        """
        if self.ep is None:
            return
        try:
            self.hangup_all()
            for c in self.calls:
                for port in (c.player, c.recorder):
                    _destroy(port)  # the recorder finalises its WAV header here
                c.release_media()
            for c in self.calls:
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

    # --- operations --------------------------------------------------------
    def register(self) -> dict:
        acc = self.create_account(register=True)
        ok = self.wait_for(lambda: acc.reg_result is not None, self.opts.reg_timeout_s)
        if not ok:
            return {
                "ok": False,
                "status": 408,
                "reason": "no registration result (client timeout)",
                "elapsed_ms": round(now_ms() - acc.t_reg_start, 3),
            }
        r = dict(acc.reg_result)
        r["ok"] = 200 <= r["status"] < 300 and r["expiration"] > 0
        if not r["ok"]:
            if r["pj_status"]:
                r["pj_error"] = _strerror(self.ep, r["pj_status"])
            tls_problems = [
                f"{ev.get('error', '')}: {'; '.join(ev['tls']['verify_msgs'])}" if ev.get("tls") else ev["error"]
                for ev in self.ep.transport_events
                if ev.get("state") == "disconnected" and ev.get("error")
            ]
            if tls_problems:
                r["transport_error"] = tls_problems[-1]
        return r

    def place_calls(
        self,
        to: str,
        n: int,
        headers: list[tuple[str, str]],
        play: str | None,
        record: str | None,
        loop_play: bool = False,
    ) -> list[_Call]:
        o = self.opts
        uri = f"sip:{to}@{o.domain}" if "@" not in to and not to.startswith("sip") else to
        for i in range(n):
            rec = _indexed(record, i, n)
            call = _Call(self, self.acc, i, play, rec, loop_play=loop_play)
            prm = pj.CallOpParam(True)
            prm.opt.audioCount = 1
            prm.opt.videoCount = 0
            for name, value in headers:
                h = pj.SipHeader()
                h.hName = name
                h.hValue = value
                prm.txOption.headers.append(h)
            self.calls.append(call)
            call.t_make = now_ms()
            try:
                call.makeCall(uri, prm)
            except pj.Error as exc:
                call.errors.append(exc.info())
                call.disconnected = True
                call.final_status = call.final_status or 500
                call.final_reason = call.final_reason or exc.reason
        return self.calls


def _destroy(obj) -> None:
    """Delete the C++ side of a pjsua2 proxy now; the proxy is disowned so a later
    garbage collection does not delete it again."""
    if obj is None:
        return
    try:
        if obj.thisown:
            type(obj).__swig_destroy__(obj)
    except Exception as exc:  # noqa: BLE001
        log.info("destroy %s: %s", type(obj).__name__, exc)


def _indexed(path: str | None, i: int, n: int) -> str | None:
    if path is None or n == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}.{i}{p.suffix}"))


def wav_seconds(path: str) -> float:
    with wave.open(path, "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (CLOCK_RATE, 1, 2):
            raise ValueError(
                f"{path}: want 8 kHz mono 16-bit PCM, got "
                f"{w.getframerate()} Hz, {w.getnchannels()} ch, {8 * w.getsampwidth()} bit"
            )
        return w.getnframes() / w.getframerate()


@dataclass
class CallPlan:
    to: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    play: str | None = None
    record: str | None = None
    duration_s: float | None = None  # connected time; default: play length + tail
    tail_s: float = 1.0
    concurrent: int = 1
    register: bool = True
    setup_timeout_s: float = 15.0
    until_signal: bool = False  # hold the call until SIGTERM/SIGUSR1/SIGINT or until_file
    until_file: str | None = None
    ready_file: str | None = None
    max_hold_s: float = 900.0
