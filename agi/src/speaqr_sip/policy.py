"""Call policy: which numbers ``call`` may dial, how many calls of a service may run at once.

Pure logic, no I/O. :class:`DestinationPolicy` is applied by the AGI check (a refusal
becomes 403 before Stasis) and again by the ARI application right before it dials;
:class:`CallLimiter` (one per service, ``[policy]`` for ``call``, ``[policy.loopback]`` for
``loopback``) lives in the ARI application, the only process that knows which calls are live.

Prefix rules (deny by default): a number is allowed when it starts with one of
``allowed_prefixes`` and with none of ``blocked_prefixes``; blocked always wins.
"""

from collections import Counter
from dataclasses import dataclass

from speaqr_sip.config import PolicyConfig, ServiceLimits


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    """Why a call is refused; ``detail`` is safe to log (prefixes, counts; no header values)."""

    reason: str
    detail: str


class DestinationPolicy:
    def __init__(self, allowed: tuple[str, ...], blocked: tuple[str, ...]) -> None:
        self.allowed = tuple(sorted(allowed, key=len, reverse=True))
        self.blocked = tuple(sorted(blocked, key=len, reverse=True))

    @classmethod
    def from_config(cls, config: PolicyConfig) -> "DestinationPolicy":
        return cls(config.allowed_prefixes, config.blocked_prefixes)

    def check(self, number: str) -> PolicyViolation | None:
        """``None`` when ``number`` (E.164, already validated) may be dialled."""
        for prefix in self.blocked:
            if number.startswith(prefix):
                return PolicyViolation("blocked_prefix", f"number is in blocked range {prefix}")
        if not any(number.startswith(prefix) for prefix in self.allowed):
            return PolicyViolation("not_allowed", "number matches no allowed prefix")
        return None


class CallLimiter:
    """Live calls of one service per user and in total; a slot is held from admission in the
    ARI application to teardown.

    Single-threaded by design (the ARI application's event loop): ``acquire`` and
    ``release`` never await, so two calls cannot both take the last slot.
    """

    def __init__(self, *, per_user: int, total: int) -> None:
        self.per_user = per_user
        self.total = total
        self._owners: dict[str, str] = {}
        self._per_user: Counter[str] = Counter()

    @classmethod
    def from_limits(cls, limits: ServiceLimits) -> "CallLimiter":
        return cls(per_user=limits.max_calls_per_user, total=limits.max_calls_total)

    @classmethod
    def from_config(cls, config: PolicyConfig, service: str = "call") -> "CallLimiter":
        return cls.from_limits(config.limits(service))

    def acquire(self, key: str, username: str) -> PolicyViolation | None:
        """Take a slot for call ``key``; a violation (and no slot) when a limit is reached."""
        if key in self._owners:
            return None
        if len(self._owners) >= self.total:
            return PolicyViolation(
                "total_limit", f"{len(self._owners)} calls active, limit {self.total}"
            )
        if self._per_user[username] >= self.per_user:
            return PolicyViolation(
                "user_limit",
                f"user has {self._per_user[username]} calls active, limit {self.per_user}",
            )
        self._owners[key] = username
        self._per_user[username] += 1
        return None

    def release(self, key: str) -> None:
        username = self._owners.pop(key, None)
        if username is None:
            return
        self._per_user[username] -= 1
        if self._per_user[username] <= 0:
            del self._per_user[username]

    def active(self, username: str | None = None) -> int:
        return len(self._owners) if username is None else self._per_user.get(username, 0)
