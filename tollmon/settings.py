"""Worker settings, read once from the environment (`TOLLMON_*`) at the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

INPUT_TOPICS = (
    "toll.lane.transactions",
    "toll.approach.detections",
    "toll.weigh.measurements",
    "toll.lane.status",
)


class Settings(BaseSettings):
    """Everything a worker needs to know, typed and frozen."""

    model_config = SettingsConfigDict(env_prefix="TOLLMON_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "localhost:9092"
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$")
    network_file: Path = Path("config/network.yaml")
    app_id: str = "tollmon"
    web_host: str = "127.0.0.1"  # localhost by default; docker-compose sets 0.0.0.0
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path = Path(".run/worker")
    partitions: int = Field(default=4, ge=1)
    alertmanager_url: str | None = "http://127.0.0.1:9093"
    # live: "now" is the wall clock; replay: the input's own event-time watermark.
    time_mode: Literal["live", "replay"] = "live"
    event_horizon_s: int = Field(default=72 * 3600, gt=0)
    allowed_lateness_s: int = Field(default=30, ge=0)
    dedup_capacity: int = Field(default=1_000_000, ge=1)
    # Detector state is checkpointed per input partition this often (processing time)
    # or after this many events of the partition, whichever comes first.
    # A worker silent this long is out of the groups and its partitions move (Faust's
    # default); a restarted worker waits out its dead predecessor's session too.
    # At least the broker's group.min.session.timeout.ms (6 s), at most the request timeout.
    session_timeout_s: float = Field(default=60.0, ge=6, le=90)
    checkpoint_every_s: float = Field(default=30.0, gt=0)
    checkpoint_every_events: int = Field(default=50_000, ge=1)
    # A plaza's detector or transaction feed silent this long (processing time) is
    # no longer waited for when ordering that plaza's events.
    reorder_idle_s: float = Field(default=10.0, gt=0)
    # How far one feed's own events may arrive out of event-time order. Each feed is
    # held back this much, which adds as much to the event-to-estimate latency; 0 for
    # lane controllers and detectors that send in order.
    feed_disorder_s: float = Field(default=0.0, ge=0)
    # After every full collection the worker freezes what survived, so that Python's
    # full collections stop scanning the detectors' state (streams/heap.py); false
    # leaves the collector as Python sets it.
    gc_freeze: bool = True
    log_level: str = "info"

    def topic(self, name: str) -> str:
        """The full name of a topic under this worker's prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(self.topic(t) for t in INPUT_TOPICS)

    @property
    def consumer_group(self) -> str:
        """The input topics' consumer group; also names the checkpoint changelog."""
        # The prefix is part of it so a replay worker's consumer groups, changelogs
        # and offsets never touch the live worker's.
        return f"{self.topic_prefix}{self.app_id}".replace(".", "-")

    @property
    def faust_app_id(self) -> str:
        """The Faust app (weighing agents, their table and changelog): a group apart."""
        return f"{self.consumer_group}-weighing"
