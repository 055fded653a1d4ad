"""Agents: decode and route; the logic lives in tollmon.ingest and detectors/."""

from __future__ import annotations

from typing import Any

import faust

from streams.topics import Topics
from tollmon.ingest import DeadLetter, Ingest, Source


def register_ingest_agent(app: faust.App, topics: Topics, ingest: Ingest) -> None:
    """Consume the input topics: valid events go on, invalid ones to the dead-letter topic."""

    async def ingest_events(stream: Any) -> None:
        async for record in stream.events():
            message = record.message
            source = Source(message.topic, message.partition, message.offset, message.key)
            outcome = ingest.accept(message.value, source)
            if isinstance(outcome, DeadLetter):
                await topics.deadletter.send(
                    key=outcome.key, value=outcome.value, headers=list(outcome.headers)
                )

    app.agent(topics.inputs, name="ingest")(ingest_events)
