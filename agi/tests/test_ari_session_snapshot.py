"""The AGI's variables read from the StasisStart snapshot (ari.conf ``channelvars``)."""

from typing import Any

import pytest

from ari_fake import FakeChannel
from test_ari_app import AGI_OK, Running, echo_through, media_of
from test_ari_app import running as running  # noqa: F401 - the fixture, re-exported


class SnapshotChannel(FakeChannel):
    """A caller whose channel JSON carries its variables, as with ari.conf ``channelvars``."""

    def json(self) -> dict[str, Any]:
        data = super().json()
        data["channelvars"] = {**self.variables, **data.get("channelvars", {})}
        return data


def variable_reads(running: Running) -> list[str]:
    return [
        q.get("variable", "")
        for m, p, q in running.fake.requests
        if m == "GET" and p.endswith("/variable")
    ]


@pytest.mark.asyncio
async def test_session_comes_from_the_snapshot_without_variable_requests(
    running: Running,  # noqa: F811
) -> None:
    fake = running.fake
    fake.channels["c-snap"] = SnapshotChannel("c-snap", {**AGI_OK, "SPEAQR_PROCESSOR": ""})
    await fake.emit("StasisStart", "c-snap", args=["loopback"])
    await fake.wait_for(lambda: len(media_of(fake, "c-snap")) == 1)
    echoed = await echo_through(media_of(fake, "c-snap")[0], [b"\x21" * 160])
    assert echoed[0].payload == b"\x21" * 160
    assert [v for v in variable_reads(running) if v.startswith("SPEAQR_")] == []


@pytest.mark.asyncio
async def test_what_the_snapshot_lacks_is_read_with_a_request(
    running: Running,  # noqa: F811
) -> None:
    fake = running.fake
    partial = {k: v for k, v in AGI_OK.items() if k != "SPEAQR_VOICE"}
    channel = SnapshotChannel("c-part", partial)
    fake.channels["c-part"] = channel
    await fake.emit("StasisStart", "c-part", args=["loopback"])
    channel.variables["SPEAQR_VOICE"] = "F"  # readable, but not in the snapshot
    await fake.wait_for(lambda: len(media_of(fake, "c-part")) == 1)
    reads = [v for v in variable_reads(running) if v.startswith("SPEAQR_")]
    assert sorted(reads) == ["SPEAQR_PROCESSOR", "SPEAQR_VOICE"]


@pytest.mark.asyncio
async def test_an_unchecked_snapshot_is_still_refused(running: Running) -> None:  # noqa: F811
    fake = running.fake
    fake.channels["c-raw"] = SnapshotChannel("c-raw", {"SPEAQR_CHECK": ""})
    await fake.emit("StasisStart", "c-raw", args=["loopback"])
    await fake.wait_for(lambda: "c-raw" not in fake.channels)
