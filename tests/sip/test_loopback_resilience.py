"""The loopback service when its parts go away, and after many calls.

- ARI application stopped (systemctl stop speaqr-ari): calls are refused with 503 within 2 s
  (no ringing, no silence), logged with the call id; started again: calls work.
- FastAGI server stopped: the next call starts it again (systemd holds its socket); socket and
  server stopped: 503 (the check did not run), logged; started again: calls work.
- ARI application killed (SIGKILL): systemd restarts it; Asterisk restarted: the application
  reconnects; calls work after both.
- 20 consecutive calls and 4 simultaneous calls leave no channel and no bridge behind (ARI's
  own lists on the target are empty).

These tests stop and start the appliance's services: they restore them whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.audio import RATE, active_segment, band_energy_ratio, compare, read_wav
from tests.sip.harness import ROOT
from tests.sip.loopback import (
    ARI_UNIT,
    FASTAGI_SOCKET,
    FASTAGI_UNIT,
    as_root,
    leftovers,
    log_lines,
    refused_in,
    systemctl,
    wait_for_ari_app,
)

REFUSAL_LIMIT_MS = 2000.0
TONE_HZ = 1000.0
MATCH_PEAK = 0.9
MATCH_FRACTION = 0.8


def _tone_came_back(record: str, sent_wav) -> dict:
    sent, _ = read_wav(sent_wav)
    received, _ = read_wav(record)
    c = compare(sent, received, RATE, max_lag_s=1.0, window_threshold=MATCH_PEAK)
    assert c["segments"]["matched_fraction"] >= MATCH_FRACTION, c
    return c


def test_ari_application_stopped_refuses_503_within_2s_then_calls_work_again(
    host, sip, setup, alice, audio_files, tmp_path, sip_metrics
):
    systemctl(host, "stop", ARI_UNIT)
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        r = sip.call(alice, "loopback", "--duration", "1")
        wall = time.monotonic() - t0
        took = refused_in(r)
        assert r.get("status") == 503, f"with the ARI application stopped the call got {r.get('status')}: {r}"
        assert not r.get("connected"), r
        assert took is not None and took < REFUSAL_LIMIT_MS, f"refused after {took} ms (limit {REFUSAL_LIMIT_MS}): {r}"
        lines = log_lines(host, r["call_id"], also="reason=application_unavailable")
        assert lines, f"no log line with call_id {r['call_id']} and reason=application_unavailable"
        sip_metrics.append(
            {
                "test": "ARI application stopped",
                "status": 503,
                "invite_to_refusal_ms": took,
                "client_wall_s": round(wall, 2),
            }
        )
    finally:
        systemctl(host, "start", ARI_UNIT)
    back_in = wait_for_ari_app(host, setup)
    rec = tmp_path / "after-restart.wav"
    r = sip.call(alice, "loopback", "--play", str(audio_files["tone"]), "--record", str(rec))
    assert r.get("status") == 200, f"calls did not work again after the ARI application restarted: {r}"
    _tone_came_back(str(rec), audio_files["tone"])
    sip_metrics.append({"test": "ARI application restarted", "registered_after_s": round(back_in, 2)})


def test_a_stopped_fastagi_server_is_started_again_by_the_next_call(host, sip, setup, alice, sip_metrics):
    """The port stays with systemd (speaqr-fastagi.socket): the next check starts the server."""
    if setup.agi_mode != "fastagi":
        pytest.skip("the AGI check runs as plain AGI here")
    systemctl(host, "stop", FASTAGI_UNIT)
    r = sip.call(alice, "loopback", "--duration", "0.5")
    assert r.get("status") == 200, f"the call after stopping the FastAGI server was not served: {r}"
    with as_root(host):
        state = host.check_output(f"systemctl is-active {FASTAGI_UNIT} || true").strip()
    assert state == "active", f"{FASTAGI_UNIT} was not started again by the call ({state})"
    sip_metrics.append({"test": "FastAGI stopped, socket kept", "invite_to_200_ms": r.get("invite_to_200_ms")})


def test_fastagi_socket_and_server_stopped_refuses_503_then_calls_work_again(host, sip, setup, alice, sip_metrics):
    if setup.agi_mode != "fastagi":
        pytest.skip("the AGI check runs as plain AGI here")
    systemctl(host, "stop", FASTAGI_SOCKET)
    systemctl(host, "stop", FASTAGI_UNIT)
    try:
        time.sleep(0.5)
        r = sip.call(alice, "loopback", "--duration", "1")
        assert r.get("status") == 503, r
        took = refused_in(r)
        assert took is not None and took < REFUSAL_LIMIT_MS, r
        assert log_lines(host, r["call_id"], also="reason=check_unavailable"), r["call_id"]
        sip_metrics.append({"test": "FastAGI stopped", "status": 503, "invite_to_refusal_ms": took})
    finally:
        systemctl(host, "start", FASTAGI_SOCKET)
        systemctl(host, "start", FASTAGI_UNIT)
    deadline = time.monotonic() + 30
    while True:
        r = sip.call(alice, "loopback", "--duration", "0.5")
        if r.get("status") == 200 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.get("status") == 200, f"calls did not work again after the FastAGI server restarted: {r}"


def test_ari_application_killed_is_restarted_by_systemd(host, sip, setup, alice, sip_metrics):
    with as_root(host):
        before = host.check_output(f"systemctl show -p MainPID --value {ARI_UNIT}").strip()
        host.check_output(f"systemctl kill -s KILL {ARI_UNIT}")
    deadline = time.monotonic() + 30
    while True:
        with as_root(host):
            now = host.check_output(f"systemctl show -p MainPID --value {ARI_UNIT}").strip()
        if now not in ("", "0", before) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert now not in ("", "0", before), f"systemd did not restart {ARI_UNIT} (MainPID {before} -> {now})"
    back_in = wait_for_ari_app(host, setup)
    r = sip.call(alice, "loopback", "--duration", "0.5")
    assert r.get("status") == 200, f"no call after the crash and restart: {r}"
    sip_metrics.append({"test": "ARI application killed", "registered_after_s": round(back_in, 2)})


def test_ari_application_reconnects_after_an_asterisk_restart(host, sip, setup, alice, sip_metrics):
    systemctl(host, "restart", "asterisk.service")
    with as_root(host):
        host.run("asterisk -rx 'core waitfullybooted'")
    back_in = wait_for_ari_app(host, setup)
    r = sip.call(alice, "loopback", "--duration", "0.5")
    assert r.get("status") == 200, f"no call after Asterisk restarted: {r}"
    with as_root(host):
        journal = host.run(f"journalctl -u {ARI_UNIT} --since -5min --no-pager -o cat").stdout
    assert "websocket connected" in journal, journal[-2000:]
    sip_metrics.append({"test": "Asterisk restarted", "ari_app_registered_after_s": round(back_in, 2)})


def test_twenty_consecutive_calls_leave_no_channel_or_bridge(host, sip, setup, alice, sip_metrics):
    users = [alice] + ([setup.speaqr_user] if setup.speaqr_user else [])
    setups = []
    for i in range(20):
        user = users[i % 4 == 3 and len(users) > 1]  # every fourth call on the speaqr user, if any
        r = sip.call(user, "loopback", "--duration", "0.5")
        assert r.get("status") == 200 and r.get("connected"), f"call {i + 1}/20 ({user}): {r}"
        setups.append(r["invite_to_200_ms"])
    left = leftovers(host, setup)
    assert left == {"channels": [], "bridges": []}, f"left behind after 20 calls: {left}"
    sip_metrics.append(
        {"test": "20 consecutive loopback calls", "invite_to_200_ms": sorted(setups)[len(setups) // 2], "left": left}
    )


def test_four_simultaneous_calls_get_their_own_audio_and_leave_nothing(
    host, sip, setup, alice, audio_files, tmp_path, sip_metrics
):
    """Two client processes with two calls each (two users when the inventory has a speaqr one,
    so both processors run at once); every call must hear its own audio."""
    second = setup.speaqr_user or alice
    procs = []
    for n, user in enumerate((alice, second)):
        rec = tmp_path / f"sim-{n}.wav"
        argv = sip.argv("call", user, "--to", "loopback", "--concurrent", "2", "--tail", "1.5")
        argv += ["--header", f"X-Origin: {user}", "--header", "X-Destination: test"]
        argv += ["--play", str(audio_files["tone"]), "--record", str(rec)]
        procs.append(
            (
                user,
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=sip.env(sip.t.users[user]),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    results = []
    for user, proc in procs:
        out, err = proc.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines, f"no result from the client of {user}: {err[-2000:]}"
        results.append((user, json.loads(lines[-1])))
    for user, res in results:
        assert len(res.get("calls", [])) == 2, res
        for c in res["calls"]:
            assert c["status"] == 200, c
            received, _ = read_wav(c["record"])
            if user == setup.speaqr_user:
                back = active_segment(received, RATE)
                assert band_energy_ratio(back, RATE, TONE_HZ + setup.shift_hz) > 0.3, c
                assert band_energy_ratio(back, RATE, TONE_HZ) < 0.1, c
            else:
                _tone_came_back(c["record"], audio_files["tone"])
            sip_metrics.append({"test": f"4 simultaneous ({user})", "invite_to_200_ms": c["invite_to_200_ms"]})
    left = leftovers(host, setup)
    assert left == {"channels": [], "bridges": []}, f"left behind after 4 simultaneous calls: {left}"
