"""speaqr_users_problems (roles/speaqr_users/filter_plugins): the whole user list checked in one
pass, each problem naming speaqr_users[<index>] and the field, never a password."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "user_checks", ROOT / "roles" / "speaqr_users" / "filter_plugins" / "user_checks.py"
)
assert _spec and _spec.loader
user_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(user_checks)

USERNAME = "^[a-z0-9][a-z0-9._-]{0,63}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
LANGUAGE = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
DEFAULTS = {"voice": "N", "enabled": True, "processor": "default", "state": "present"}
GOOD = {
    **DEFAULTS,
    "username": "alice",
    "email": "a@example.com",
    "source_language": "en-us",
    "target_language": "es-es",
}


def problems(users):
    return user_checks.speaqr_users_problems(users, USERNAME, EMAIL, LANGUAGE)


def test_a_valid_list_has_no_problem():
    assert problems([GOOD, {**GOOD, "username": "bob"}, {**DEFAULTS, "username": "carol", "state": "absent"}]) == []


def test_each_bad_field_is_named_with_the_item_index_and_username():
    users = [
        GOOD,
        {**GOOD, "username": "bob", "email": "not-an-address"},
        {**GOOD, "username": "Carol!"},
        {**GOOD, "username": "dave", "voice": "X", "enabled": "yes", "processor": "gpu"},
        {**GOOD, "username": "erin", "target_language": "spanish please"},
        {**GOOD, "username": "frank", "state": "gone"},
    ]
    assert problems(users) == [
        "speaqr_users[1] (bob): a present user needs an email address",
        f"speaqr_users[2] (Carol!): username must match {USERNAME}",
        "speaqr_users[3] (dave): voice must be M, F or N",
        "speaqr_users[3] (dave): enabled must be true or false",
        "speaqr_users[3] (dave): processor must be default, passthrough or speaqr",
        "speaqr_users[4] (erin): target_language must be a language code such as en-us",
        "speaqr_users[5] (frank): state must be present or absent",
    ]


def test_an_absent_user_needs_no_email_or_languages():
    assert problems([{**DEFAULTS, "username": "gone", "state": "absent"}]) == []


def test_items_without_a_username_or_that_are_not_mappings_are_reported_by_index():
    assert problems([{**GOOD, "username": 7}, "alice"]) == [
        f"speaqr_users[0]: username must match {USERNAME}",
        "speaqr_users[1]: is not a mapping",
    ]


def test_a_password_never_appears_in_a_problem():
    secret = "s3cret-Passw0rd-value"
    found = problems([{**GOOD, "email": "bad", "password": secret}])
    assert found and all(secret not in p for p in found)
