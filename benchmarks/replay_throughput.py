"""How fast `tollmon replay --fast` produces into the local broker (target ≥ 50,000 events/s).

Generates simulated traffic for the sample network, loads it as a replay would (routing
each line), then times `replay_messages` as fast as possible into fresh topics under a
new prefix. Loading is timed separately: it is paid once per file, not per event sent.

    python benchmarks/replay_throughput.py [--events 400000] [--bootstrap localhost:9092]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic

from tollmon.eventfiles import RawLine
from tollmon.events import encode
from tollmon.network import load_network
from tollmon.publish import TOPIC_BY_TYPE
from tollmon.replay import load_messages, replay_messages
from tollmon.simulate import TrafficProfile, generate

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--bootstrap", default="localhost:9092")
    args = parser.parse_args()

    network = load_network(REPO / "config" / "network.yaml")
    # Enough hours of busy traffic on the whole network to reach the requested count.
    events = generate(network, 1_714_521_600_000, 36_000, TrafficProfile(vehicles_per_hour=900))
    lines = []
    for number, event in enumerate(events, start=1):
        lines.append(RawLine("bench", number, encode(event)))
        if number >= args.events:
            break

    started = time.perf_counter()
    loaded = load_messages(lines)
    load_s = time.perf_counter() - started

    prefix = f"bench{uuid.uuid4().hex[:8]}."
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    try:
        admin.create_topics([NewTopic(prefix + t, 4, 1) for t in TOPIC_BY_TYPE.values()])
    finally:
        admin.close()

    stats = replay_messages(loaded, args.bootstrap, prefix, speed=None)
    print(f"events           {stats.sent:,}")
    print(f"load (route+sort) {len(lines) / load_s:,.0f} events/s")
    print(f"replay --fast     {stats.rate:,.0f} events/s ({stats.seconds:.2f} s, acks=1)")
    print(f"topics           {prefix}*")


if __name__ == "__main__":
    main()
