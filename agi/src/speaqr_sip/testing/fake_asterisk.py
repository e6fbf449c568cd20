"""A scripted Asterisk for AGI tests and benchmarks: sends the AGI environment, answers commands."""

import threading
from collections.abc import Mapping, Sequence
from typing import TextIO

# The AGI check's own names (speaqr_sip.validation.HEADER_NAMES), in its order.
CHECKED_HEADERS = ("X-Origin", "X-Destination", "X-Dial")


def split_agi_args(line: str) -> list[str]:
    """Split an AGI command like Asterisk's parse_args(): quotes group, backslash escapes."""
    args: list[str] = []
    current: list[str] = []
    quoted = escaped = in_token = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
            in_token = True
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
            in_token = True
        elif char == " " and not quoted:
            if in_token:
                args.append("".join(current))
                current, in_token = [], False
        else:
            current.append(char)
            in_token = True
    if in_token:
        args.append("".join(current))
    return args


class FakeAsterisk:
    """Answers GET VARIABLE from ``variables`` and records SET VARIABLE."""

    def __init__(
        self,
        env: Mapping[str, str],
        variables: Mapping[str, str],
        *,
        hangup_after: int | None = None,
    ) -> None:
        self.env = dict(env)
        self.variables = dict(variables)
        self.set_vars: dict[str, str] = {}
        self.commands: list[str] = []
        self.hangup_after = hangup_after

    def converse(self, reader: TextIO, writer: TextIO) -> None:
        for key, value in self.env.items():
            writer.write(f"{key}: {value}\n")
        writer.write("\n")
        writer.flush()
        while True:
            line = reader.readline()
            if not line:
                return
            line = line.rstrip("\n")
            self.commands.append(line)
            if self.hangup_after is not None and len(self.commands) > self.hangup_after:
                writer.write("HANGUP\n")
                writer.flush()
                return
            args = split_agi_args(line)
            reply: str
            if args[:2] == ["GET", "VARIABLE"]:
                found = self.variables.get(args[2])
                # Asterisk's GET VARIABLE reads into a 1024-byte buffer.
                reply = "200 result=0" if found is None else f"200 result=1 ({found[:1023]})"
            elif args[:3] == ["GET", "FULL", "VARIABLE"]:
                # Only expressions the test listed verbatim (e.g. "${LEN(...)}") are known.
                found = self.variables.get(args[3])
                reply = "200 result=0" if found is None else f"200 result=1 ({found})"
            elif args[:2] == ["SET", "VARIABLE"]:
                self.set_vars[args[2]] = args[3]
                reply = "200 result=1"
            else:
                reply = "510 Invalid or unknown command"
            writer.write(reply + "\n")
            writer.flush()

    def start(self, reader: TextIO, writer: TextIO) -> threading.Thread:
        thread = threading.Thread(target=self.converse, args=(reader, writer), daemon=True)
        thread.start()
        return thread


def channel(
    *,
    service: str = "loopback",
    endpoint: str = "alice",
    headers: Mapping[str, str | Sequence[str]] | None = None,
    call_id: str = "abc123@client",
    registered: bool = True,
) -> tuple[dict[str, str], dict[str, str]]:
    """An AGI environment and the channel's readable variables (``registered``: the
    endpoint's AOR, named like it, has a contact).

    A header given as a list of values is sent that many times: ``PJSIP_HEADER(read,<name>,<n>)``
    answers instance ``n``, and the check's second-instance length expression sees it.
    """
    env = {
        "agi_request": "speaqr-agi-check",
        "agi_channel": f"PJSIP/{endpoint}-00000001",
        "agi_uniqueid": "1700000000.1",
        "agi_arg_1": service,
    }
    variables = {"CHANNEL(pjsip,call-id)": call_id, "CHANNEL(endpoint)": endpoint}
    variables[f"PJSIP_ENDPOINT({endpoint},aors)"] = endpoint
    if registered:
        variables[f"PJSIP_AOR({endpoint},contact)"] = (
            f"{endpoint};@0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        )
    instances: dict[str, list[str]] = {}
    for name, value in (headers or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        instances[name] = values
        if values:
            variables[f"PJSIP_HEADER(read,{name})"] = values[0]
        for number, each in enumerate(values, start=1):
            variables[f"PJSIP_HEADER(read,{name},{number})"] = each
    lengths = (
        str(len(instances[name][1])) if len(instances.get(name, [])) > 1 else "0"
        for name in CHECKED_HEADERS
    )
    variables[
        ",".join(f"${{LEN(${{PJSIP_HEADER(read,{name},2)}})}}" for name in CHECKED_HEADERS)
    ] = ",".join(lengths)
    return env, variables
