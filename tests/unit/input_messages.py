"""An input message as the consumer hands it over (streams.checkpoint.InputMessage)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputRecord:
    """Where a message came from, its key and its bytes; nothing else of a Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
