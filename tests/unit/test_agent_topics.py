"""The weighing agents' topics and their table's changelog are created before Faust
subscribes, as Faust declares them."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from streams.checkpoint import CHANGELOG_CONFIG
from streams.open_trips import open_trips_table
from streams.topics import Topics, agent_topics, bias_checkpoints_topic
from tollmon.settings import Settings


@pytest.mark.parametrize("prefix", ["", "t1."])
def test_the_topics_created_ahead_are_the_agents_topics_as_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv("TOLLMON_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("TOLLMON_PARTITIONS", "6")
    settings = Settings()
    app = faust.App(
        settings.faust_app_id, broker="kafka://localhost:9092", store="memory://", datadir=tmp_path
    )
    topics = Topics.declare(app, settings)

    declared = {
        topic.get_topic_name(): (topic.partitions, {}) for topic in (topics.by_pass, topics.pairs)
    }
    trips = open_trips_table(app, settings.partitions).changelog_topic
    assert trips.compacting
    declared[trips.get_topic_name()] = (trips.partitions, {"cleanup.policy": "compact"})
    # The pair assessor's checkpoints: one partition, compacted like the detectors'.
    declared[bias_checkpoints_topic(settings)] = (1, CHANGELOG_CONFIG)
    assert agent_topics(settings) == declared
    assert declared[f"{prefix}toll.weigh.by_pass"] == (6, {})
