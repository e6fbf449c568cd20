"""Pure rules of the call service: number formats, dial string, caller-ID, cause mapping."""

import pytest

from speaqr_sip.ari.flows.call_routing import (
    caller_id,
    format_number,
    outcome_for_callee_cause,
    trunk_endpoint,
)
from speaqr_sip.causes import sip_status_for_cause
from speaqr_sip.config import CallConfig


@pytest.mark.parametrize(
    ("config", "number", "expected"),
    [
        (CallConfig(), "+34911234567", "+34911234567"),
        (CallConfig(number_format="digits"), "+34911234567", "34911234567"),
        (
            CallConfig(number_format="national", national_country_code="34"),
            "+34911234567",
            "911234567",
        ),
        (
            CallConfig(number_format="national", national_country_code="34"),
            "+14155550100",
            "0014155550100",
        ),
        (
            CallConfig(
                number_format="national",
                national_country_code="44",
                national_trunk_prefix="0",
                international_prefix="00",
            ),
            "+442079460000",
            "02079460000",
        ),
        (
            CallConfig(
                number_format="national", national_country_code="1", international_prefix="011"
            ),
            "+34911234567",
            "01134911234567",
        ),
    ],
)
def test_number_formats(config: CallConfig, number: str, expected: str) -> None:
    assert format_number(number, config) == expected


def test_trunk_endpoint_template() -> None:
    config = CallConfig(trunk_endpoint_template="PJSIP/{number}@carrier-tls")
    assert trunk_endpoint("+34911234567", config) == "PJSIP/+34911234567@carrier-tls"
    config = CallConfig(trunk_endpoint_template="PJSIP/carrier/sip:{number}@sip.carrier.example")
    assert trunk_endpoint("+1415555", config) == "PJSIP/carrier/sip:+1415555@sip.carrier.example"


def test_caller_id_policies() -> None:
    fixed = CallConfig(callerid_policy="fixed", callerid_number="+34910000000")
    assert caller_id(fixed, "alice") == '"+34910000000" <+34910000000>'
    named = CallConfig(callerid_policy="fixed", callerid_number="34910000000", callerid_name="Acme")
    assert caller_id(named, "alice") == '"Acme" <34910000000>'
    assert caller_id(CallConfig(callerid_policy="username"), "alice") == '"alice" <alice>'


@pytest.mark.parametrize(
    ("callee_cause", "caller_cause", "status", "cause"),
    [
        (1, 1, 404, "not_found"),
        (3, 1, 404, "not_found"),
        (22, 1, 404, "not_found"),
        (17, 17, 486, "busy"),
        (18, 19, 480, "no_answer"),
        (19, 19, 480, "no_answer"),
        (20, 19, 480, "no_answer"),
        (0, 19, 480, "no_answer"),
        (16, 19, 480, "no_answer"),
        (21, 21, 403, "rejected"),
        (28, 28, 484, "invalid_number"),
        (34, 34, 503, "unavailable"),
        (38, 34, 503, "unavailable"),
        (41, 34, 503, "unavailable"),
        (42, 34, 503, "unavailable"),
        (58, 34, 503, "unavailable"),
        (127, 34, 503, "unavailable"),
    ],
)
def test_callee_cause_mapping(
    callee_cause: int, caller_cause: int, status: int, cause: str
) -> None:
    outcome = outcome_for_callee_cause(callee_cause)
    assert (outcome.caller_cause, outcome.sip_status, outcome.cause) == (
        caller_cause,
        status,
        cause,
    )
    # The caller cause really becomes that status in chan_pjsip (hangup_cause2sip).
    assert sip_status_for_cause(outcome.caller_cause) == status
