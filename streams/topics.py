"""The Kafka topics a worker reads and writes, under its configured prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from streams.bias_checkpoints import BIAS_CHECKPOINTS
from streams.checkpoint import CHANGELOG_CONFIG
from streams.open_trips import changelog_topic
from tollmon.ingest import DEADLETTER_TOPIC
from tollmon.settings import Settings

ALERTS_TOPIC = "toll.alerts"
ESTIMATES_TOPIC = "toll.queue.estimates"
# Weighings re-keyed by pass_id, so both ends of a trip meet on one partition.
BY_PASS_TOPIC = "toll.weigh.by_pass"
# Every pair of the network, for the one scale-bias fit (a single partition).
PAIRS_TOPIC = "toll.weigh.pairs"


def bias_checkpoints_topic(settings: Settings) -> str:
    """The compacted topic the pair assessor is checkpointed to (one partition)."""
    return f"{settings.consumer_group}-{BIAS_CHECKPOINTS}"


def agent_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """The weighing agents' topics, name → (partitions, configuration), as `declare` makes them.

    A worker creates them before Faust subscribes (`streams.app.create_agent_topics`):
    Faust creates them itself just before, but a topic the broker's metadata does not
    show yet is left out of the group's assignment until the next metadata refresh,
    minutes later; the pairs topic was, on a first start, and no pair was assessed.
    The open trips' changelog is created the same way, compacted as Faust makes it, and
    the compacted topic of the pair assessor's checkpoints.
    """
    return {
        settings.topic(BY_PASS_TOPIC): (settings.partitions, {}),
        settings.topic(PAIRS_TOPIC): (1, {}),
        changelog_topic(settings.faust_app_id): (
            settings.partitions,
            {"cleanup.policy": "compact"},
        ),
        bias_checkpoints_topic(settings): (1, CHANGELOG_CONFIG),
    }


@dataclass(frozen=True)
class Topics:
    """Topic handles bound to one Faust app.

    Values travel as raw bytes: decoding is ours (msgspec), so that a malformed
    message reaches the dead-letter path instead of failing inside Faust.
    """

    deadletter: Any
    alerts: Any
    estimates: Any
    by_pass: Any
    pairs: Any

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        def raw(*names: str, partitions: int = settings.partitions, internal: bool = False) -> Any:
            return app.topic(
                *names,
                key_type=bytes,
                value_type=bytes,
                key_serializer="raw",
                value_serializer="raw",
                partitions=partitions,
                internal=internal,
            )

        return cls(
            deadletter=raw(settings.topic(DEADLETTER_TOPIC)),
            alerts=raw(settings.topic(ALERTS_TOPIC)),
            estimates=raw(settings.topic(ESTIMATES_TOPIC)),
            # Internal: created by the worker with exactly these partition counts.
            by_pass=raw(settings.topic(BY_PASS_TOPIC), internal=True),
            pairs=raw(settings.topic(PAIRS_TOPIC), partitions=1, internal=True),
        )
