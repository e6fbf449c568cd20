"""A diagnosis: one point of the troubleshooting list, its status and what to do about it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    point: str  # e.g. "tls-certificate", "account alice"
    status: Status
    detail: str  # what was seen
    hint: str = ""  # what to do (failures and warnings)


def ok(point: str, detail: str) -> Finding:
    return Finding(point, Status.OK, detail)


def warn(point: str, detail: str, hint: str) -> Finding:
    return Finding(point, Status.WARN, detail, hint)


def fail(point: str, detail: str, hint: str) -> Finding:
    return Finding(point, Status.FAIL, detail, hint)


def render_text(findings: Iterable[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"{f.status.value:<4}  {f.point:<18}  {f.detail}")
        if f.hint:
            lines.append(f"{'':<4}  {'':<18}  -> {f.hint}")
    return "\n".join(lines)


def render_json(findings: Iterable[Finding]) -> str:
    return json.dumps([asdict(f) | {"status": f.status.value} for f in findings], indent=2)


def failed(findings: Iterable[Finding]) -> bool:
    return any(f.status is Status.FAIL for f in findings)
