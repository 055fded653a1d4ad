"""Faust's buffer of table changelog messages, as the worker configures it: a flush
before a commit waits for what was written before it, not for an empty buffer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport.producer import ProducerBuffer

from streams.app import CHANGELOG_BUFFER_MESSAGES, bound_changelog_flush


async def started_buffer(sent: list[Any]) -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]

    async def send(message: Any) -> None:
        await asyncio.sleep(0)  # one loop iteration per message, as a busy worker's
        sent.append(message)

    buffer._send_pending = send  # type: ignore[method-assign]
    await buffer.start()
    return buffer


async def test_a_flush_ends_while_the_agent_keeps_writing() -> None:
    sent: list[Any] = []
    buffer = await started_buffer(sent)
    bound_changelog_flush(buffer)
    for n in range(50):
        buffer.put(n)  # type: ignore[arg-type]

    async def keep_writing() -> None:
        n = 50
        while True:
            buffer.put(n)  # type: ignore[arg-type]
            n += 1
            await asyncio.sleep(0)

    writer = asyncio.create_task(keep_writing())
    await asyncio.wait_for(buffer.flush(), timeout=5)
    writer.cancel()
    assert sent[:50] == list(range(50))
    assert buffer.size > 0  # it did not wait for an empty buffer
    await buffer.flush()  # the agent stopped writing: this one empties it
    assert buffer.size == 0
    await buffer.stop()


async def test_a_flush_at_stop_sends_everything() -> None:
    sent: list[Any] = []
    buffer = await started_buffer(sent)
    bound_changelog_flush(buffer)
    for n in range(300):
        buffer.put(n)  # type: ignore[arg-type]
    await buffer.flush()
    assert sent == list(range(300))
    await buffer.stop()


def test_a_burst_of_open_trips_fits_before_the_agent_waits() -> None:
    buffer = ProducerBuffer()
    bound_changelog_flush(buffer)
    assert buffer.max_messages == CHANGELOG_BUFFER_MESSAGES >= 10 * ProducerBuffer.max_messages
