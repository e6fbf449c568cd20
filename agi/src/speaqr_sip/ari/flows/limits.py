"""Every service's abuse limits: a concurrency slot held until teardown, a duration cap.

The limits come from :meth:`speaqr_sip.config.PolicyConfig.limits` for ``ctx.service``
(``[policy]`` for ``call``, ``[policy.loopback]`` for ``loopback``); each service has its own
:class:`~speaqr_sip.policy.CallLimiter` in ``ctx.services.limiters``.
"""

import asyncio
from collections.abc import Awaitable, Callable, Collection

from speaqr_sip.ari.call import CallContext
from speaqr_sip.ari.flows.call_routing import POLICY
from speaqr_sip.ari.flows.refusal import refuse


def take_slot(ctx: CallContext) -> bool:
    """Hold one of the service's slots until teardown; over a limit the call is refused (403).

    Call it before answering and before anything costly (processor sessions, dialling).
    """
    limiter = ctx.services.limiters[ctx.service]
    username = ctx.record.username
    violation = limiter.acquire(ctx.channel_id, username)
    if violation is not None:
        ctx.metrics.calls_refused += 1
        refuse(ctx, POLICY, f"refused by policy ({violation.reason}: {violation.detail})")
        return False
    ctx.on_teardown(f"{ctx.service} call slot", _releaser(ctx))
    ctx.log.info(
        "%s slot taken: user %d/%d, total %d/%d",
        ctx.service,
        limiter.active(username),
        limiter.per_user,
        limiter.active(),
        limiter.total,
    )
    return True


def _releaser(ctx: CallContext) -> Callable[[], Awaitable[None]]:
    limiter = ctx.services.limiters[ctx.service]

    async def release() -> None:
        limiter.release(ctx.channel_id)

    return release


async def wait_within_duration[T](
    ctx: CallContext, tasks: Collection["asyncio.Task[T]"], answered_at: float
) -> set["asyncio.Task[T]"] | None:
    """Wait until the call ends or one of ``tasks`` finishes, at most the service's
    ``max_call_duration`` after ``answered_at`` (loop time).

    Returns the finished tasks, or ``None`` when the maximum was reached: the call is then
    ended (normal clearing, record cause ``max_duration``).
    """
    loop = asyncio.get_running_loop()
    limit = ctx.config.policy.limits(ctx.service).max_call_duration
    remaining = max(0.0, answered_at + limit - loop.time())
    ended = asyncio.create_task(ctx.ended.wait())
    try:
        done, _ = await asyncio.wait(
            {ended, *tasks}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        ended.cancel()
    if not done:
        ctx.record.set_outcome("max_duration")
        ctx.log.info("maximum call duration (%d s) reached: hanging up", limit)
        ctx.end("maximum call duration reached")
        return None
    return {task for task in tasks if task in done}
