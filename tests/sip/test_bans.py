"""Password guessers are banned (fail2ban on Asterisk's security log, bans in nftables), from
client hosts of their own: network namespaces on the lab's public segment, whose packets reach
the appliance on a real interface with their own source address (scripts/target/common.sh,
attach_client_hosts). Host 1 guesses, host 2 is a bystander, host 3 is on the never-banned list
(speaqr_fail2ban_ignoreip of the scenario's host_vars).

Needs the lab topology (SPEAQR_TARGET_NETNS and its -client<k> namespaces); skipped elsewhere.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from tests.sip.harness import SipClient, _templated

WRONG_PASSWORD = "not-the-password-of-this-user"
CLIENT_ADDRESS = "198.51.100.{}"


@pytest.fixture(scope="module")
def bans(host, sip_target) -> dict:
    names = [sip_target.lab_host(f"client{k}") for k in (1, 2, 3)]
    settings = {
        "maxretry": int(_templated(host, "speaqr_fail2ban_maxretry") or 5),
        "bantime": int(_templated(host, "speaqr_fail2ban_bantime") or 3600),
        "ignoreip": _templated(host, "speaqr_fail2ban_ignoreip") or [],
        "netns": names,
    }
    if settings["bantime"] > 120:
        pytest.skip(f"speaqr_fail2ban_bantime is {settings['bantime']} s: too long to wait for in a test")
    return settings


@pytest.fixture
def from_host(sip_target):
    """SipClient whose processes run on client host k (1-based)."""

    def client(bans_settings: dict, k: int) -> SipClient:
        return SipClient(sip_target.from_lab_host(bans_settings["netns"][k - 1]))

    return client


def banned_addresses(host) -> set[str]:
    out = host.run("fail2ban-client get speaqr-asterisk banip").stdout
    return set(out.split())


def unban(host, address: str) -> None:
    host.run(f"fail2ban-client set speaqr-asterisk unbanip {address}")


def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def guess(client: SipClient, user: str, times: int) -> list[dict]:
    results = [client.register(user, password=WRONG_PASSWORD) for _ in range(times)]
    for r in results:
        assert not r["ok"] and r["status"] in (401, 403), f"a wrong password was not refused: {r}"
    return results


def test_a_guessing_host_is_banned_while_another_host_registers_and_the_ban_lifts(host, bans, from_host, sip_user):
    guesser, bystander = from_host(bans, 1), from_host(bans, 2)
    address = CLIENT_ADDRESS.format(11)
    # A clean slate: an earlier suite's flood from a client host (test_abuse.py) may have got it
    # banned, rightly, and its ban may not have lifted yet under emulation.
    for k in (11, 12):
        unban(host, CLIENT_ADDRESS.format(k))
    try:
        guess(guesser, sip_user, bans["maxretry"])
        # fail2ban counts the ban time from the last failure, not from when the ban shows.
        guessed_at = time.monotonic()
        assert wait_for(lambda: address in banned_addresses(host), 15), (
            f"{bans['maxretry']} wrong passwords from {address} did not get it banned: "
            f"{host.run('fail2ban-client status speaqr-asterisk').stdout}"
        )

        refused = guesser.register(sip_user)
        assert not refused["ok"], f"a banned host still registered: {refused}"
        assert refused["status"] != 200, refused

        served = bystander.register(sip_user)
        assert served["ok"] and served["status"] == 200, f"another host could not register: {served}"

        assert wait_for(lambda: address not in banned_addresses(host), bans["bantime"] + 15, interval=1), (
            f"the ban of {address} did not lift after speaqr_fail2ban_bantime={bans['bantime']} s"
        )
        lifted_after = time.monotonic() - guessed_at
        assert lifted_after >= bans["bantime"] - 2, (
            f"the ban lifted {lifted_after:.1f} s after the guesses, before its time"
        )
        back = guesser.register(sip_user)
        assert back["ok"] and back["status"] == 200, f"the host could not register once its ban lifted: {back}"
    finally:
        unban(host, address)


def test_an_allow_listed_host_is_never_banned(host, bans, from_host, sip_user):
    address = CLIENT_ADDRESS.format(13)
    networks = [ipaddress.ip_network(n, strict=False) for n in bans["ignoreip"]]
    if not any(ipaddress.ip_address(address) in n for n in networks):
        pytest.fail(f"client host 3 ({address}) must be in speaqr_fail2ban_ignoreip of the lab inventory")
    allowed = from_host(bans, 3)
    guess(allowed, sip_user, bans["maxretry"] + 2)
    time.sleep(3)  # fail2ban's polling backend reads the log about once a second
    assert address not in banned_addresses(host)
    served = allowed.register(sip_user)
    assert served["ok"] and served["status"] == 200, f"the allow-listed host could not register: {served}"
