"""speaqr_users_problems: every invalid field of the speaqr_users list, checked in one pass.

One assert over the whole list instead of one per user: with 10,000 users a per-user loop costs
minutes of task overhead. Each problem names the list item and the field, never a password.
"""

from __future__ import annotations

import re
from typing import Any

STATES = ("present", "absent")
VOICES = ("M", "F", "N")
PROCESSORS = ("default", "passthrough", "speaqr")


def _matches(value: Any, pattern: str) -> bool:
    return isinstance(value, str) and re.search(pattern, value) is not None


def _item_problems(user: Any, username_re: str, email_re: str, language_re: str) -> list[str]:
    if not isinstance(user, dict):
        return ["is not a mapping"]
    problems = []
    if not _matches(user.get("username"), username_re):
        problems.append(f"username must match {username_re}")
    state = user.get("state")
    if state not in STATES:
        problems.append("state must be present or absent")
    if state == "present":
        if not _matches(user.get("email"), email_re):
            problems.append("a present user needs an email address")
        for field in ("source_language", "target_language"):
            if not _matches(user.get(field), language_re):
                problems.append(f"{field} must be a language code such as en-us")
    if user.get("voice") not in VOICES:
        problems.append("voice must be M, F or N")
    if not isinstance(user.get("enabled"), bool):
        problems.append("enabled must be true or false")
    if user.get("processor") not in PROCESSORS:
        problems.append("processor must be default, passthrough or speaqr")
    return problems


def speaqr_users_problems(users: list[Any], username_re: str, email_re: str, language_re: str) -> list[str]:
    """'speaqr_users[<i>] (<username>): <problem>' for every problem of every item."""
    found = []
    for index, user in enumerate(users):
        name = user.get("username") if isinstance(user, dict) else None
        label = f"speaqr_users[{index}] ({name})" if isinstance(name, str) else f"speaqr_users[{index}]"
        found.extend(f"{label}: {p}" for p in _item_problems(user, username_re, email_re, language_re))
    return found


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"speaqr_users_problems": speaqr_users_problems}
