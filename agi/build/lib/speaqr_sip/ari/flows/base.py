"""What a service flow is: the code that serves one call of one service."""

from abc import ABC, abstractmethod
from typing import ClassVar

from speaqr_sip.ari.call import CallContext


class Flow(ABC):
    """Runs one call until it ends; resources go through ``ctx.on_teardown``."""

    service: ClassVar[str]

    @abstractmethod
    async def run(self, ctx: CallContext) -> None: ...
