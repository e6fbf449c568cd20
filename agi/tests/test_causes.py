"""The refusal table matches product.md and chan_pjsip's hangup_cause2sip()."""

import pytest

from speaqr_sip.causes import REFUSALS, Refusal

# hangup_cause2sip() in channels/chan_pjsip.c (Asterisk 22), the subset the table uses.
HANGUP_CAUSE2SIP = {1: 404, 21: 403, 28: 484, 34: 503, 127: 500}


def test_every_reason_has_a_disposition() -> None:
    assert set(REFUSALS) == set(Refusal)


@pytest.mark.parametrize("reason", list(Refusal))
def test_hangup_fallback_matches_asterisk(reason: Refusal) -> None:
    d = REFUSALS[reason]
    assert HANGUP_CAUSE2SIP[d.q850_cause] == d.sip_via_hangup
    # PJSIPHangup() accepts 400-699 only.
    assert 400 <= d.sip_status <= 699
    # Both paths stay in the same class (4xx vs 5xx).
    assert d.sip_status // 100 == d.sip_via_hangup // 100


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (Refusal.MISSING_HEADER, 400),
        (Refusal.BAD_CHARACTERS, 400),
        (Refusal.HEADER_TOO_LONG, 400),
        (Refusal.UNKNOWN_USER, 404),
        (Refusal.USER_DISABLED, 403),
        (Refusal.ORIGIN_MISMATCH, 403),
        (Refusal.MALFORMED_NUMBER, 484),
        (Refusal.DESTINATION_NOT_ALLOWED, 403),
        (Refusal.DATABASE_UNAVAILABLE, 503),
    ],
)
def test_product_statuses(reason: Refusal, status: int) -> None:
    assert REFUSALS[reason].sip_status == status
