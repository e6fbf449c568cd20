"""pyst2's AGI object, quiet and usable over any pair of text streams.

pyst2's ``AGI.__init__`` writes its whole protocol trace to stderr and installs a
SIGHUP handler, which only works in the main thread. :class:`StreamAGI` keeps the
protocol code (``execute``, ``get_variable``, ``set_variable``...) and replaces the
constructor so the same object serves plain AGI (stdin/stdout) and FastAGI (a socket's
file objects, in worker threads).
"""

import signal
from typing import Any, TextIO

from asterisk.agi import AGI, AGISIGHUPHangup


class _NullWriter:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None


class _HangupAwareReader:
    """Turn FastAGI's ``HANGUP`` notification line into pyst2's hangup exception.

    Over FastAGI, Asterisk signals a hangup by writing ``HANGUP`` on the socket; pyst2
    would try to parse it as a command result and fail with a ``ValueError``.
    An empty read (closed stream) becomes ``EOFError``.
    """

    def __init__(self, reader: TextIO) -> None:
        self._reader = reader

    def readline(self) -> str:
        line = self._reader.readline()
        if line == "":
            raise EOFError("AGI stream closed by Asterisk")
        if line.strip() == "HANGUP":
            raise AGISIGHUPHangup("Asterisk reported HANGUP")
        return line


class StreamAGI(AGI):  # type: ignore[misc]
    """An AGI session over ``reader``/``writer``; reads the AGI environment on creation."""

    env: dict[str, str]

    def __init__(self, reader: TextIO, writer: TextIO, *, handle_sighup: bool = False) -> None:
        self.stdin = _HangupAwareReader(reader)
        self.stdout = writer
        self.stderr: Any = _NullWriter()
        self._got_sighup = False
        if handle_sighup:
            signal.signal(signal.SIGHUP, self._handle_sighup)
        self.env = {}
        self._get_agi_env()

    def argument(self, index: int) -> str:
        """The dialplan argument ``index`` (1-based) given to ``AGI(script,arg1,...)``."""
        return self.env.get(f"agi_arg_{index}", "")


def escape_value(value: str) -> str:
    """Escape a value for a double-quoted AGI argument (Asterisk's parser honours ``\\``)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").replace("\r", " ")
