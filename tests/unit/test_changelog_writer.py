"""A checkpoint reaches its changelog after the outputs it covers, and only if still wanted."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.changelog import ChangelogWriter


class _Producer:
    """Stands in for the changelog's own aiokafka producer: records what is sent."""

    def __init__(self, log: list[str]) -> None:
        self._log = log

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self._log.append(f"checkpoint {value.decode()} to {topic}")
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stored.set_result(None)
        return stored


def _writer(log: list[str], outputs_sent: asyncio.Event) -> ChangelogWriter:
    async def flush_outputs() -> None:
        await outputs_sent.wait()
        log.append("outputs flushed")

    writer = ChangelogWriter("unused:9092", {}, 1024, flush_outputs=flush_outputs)

    async def ready() -> Any:
        return _Producer(log)

    writer._ready_producer = ready  # type: ignore[method-assign]
    return writer


def test_a_checkpoint_is_sent_only_after_the_outputs_before_it() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        outputs_sent = asyncio.Event()
        write = asyncio.ensure_future(_writer(log, outputs_sent).write("cl", 0, [(b"0.0", b"A")]))
        await asyncio.sleep(0.01)
        assert log == []  # waits for the outputs
        outputs_sent.set()
        assert await write is True
        return log

    assert asyncio.run(scenario()) == ["outputs flushed", "checkpoint A to cl"]


def test_a_checkpoint_no_longer_wanted_once_the_outputs_are_sent_is_dropped() -> None:
    async def scenario() -> tuple[bool, list[str]]:
        log: list[str] = []
        outputs_sent = asyncio.Event()
        taken_over = False
        write = asyncio.ensure_future(
            _writer(log, outputs_sent).write("cl", 0, [(b"0.0", b"old")], lambda: not taken_over)
        )
        await asyncio.sleep(0.01)
        # The partition is taken over while the older checkpoint waits for the outputs.
        taken_over = True
        outputs_sent.set()
        return await write, log

    sent, log = asyncio.run(scenario())
    assert sent is False
    assert log == ["outputs flushed"]


def test_the_parts_of_a_checkpoint_are_sent_in_order_after_the_outputs() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        outputs_sent = asyncio.Event()
        outputs_sent.set()
        parts = [(b"0.0", b"A0"), (b"0.1", b"A1"), (b"0.2", b"A2")]
        assert await _writer(log, outputs_sent).write("cl", 0, parts) is True
        return log

    assert asyncio.run(scenario()) == [
        "outputs flushed",
        "checkpoint A0 to cl",
        "checkpoint A1 to cl",
        "checkpoint A2 to cl",
    ]
