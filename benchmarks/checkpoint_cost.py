"""What one detector checkpoint costs: time to save and restore, and its size.

Runs the sample network's detectors over an hour of busy simulated traffic, then saves
and restores the state of each input partition (its plazas, as the worker groups them,
plus a full dedup memory of the partition) the way `streams/checkpoint.py` does, each
plaza encoded on its own (a save round spreads them over input batches).

    python benchmarks/checkpoint_cost.py [--seconds 3600] [--dedup-ids 250000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

from kafka.partitioner.default import murmur2

from tollmon.checkpoint import (
    FORMAT_VERSION,
    PartitionCheckpoint,
    PlazaCheckpoint,
    decode_checkpoint,
    encode_checkpoint,
)
from tollmon.network import load_network
from tollmon.pipeline import Pipeline, PipelineConfig
from tollmon.simulate import TrafficProfile, generate

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
ROUNDS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600)
    # The default worker remembers 1,000,000 ids over 4 partitions.
    parser.add_argument("--dedup-ids", type=int, default=250_000)
    args = parser.parse_args()

    network = load_network(REPO / "config" / "network.yaml")
    pipeline = Pipeline(network, PipelineConfig(max_hold_s=600.0))
    count = 0
    for event in generate(network, 1_714_521_600_000, args.seconds, TrafficProfile(900)):
        pipeline.process(event, now_s=0.0)
        count += 1
    by_partition: dict[int, list[str]] = defaultdict(list)
    for plaza in network.plazas:
        by_partition[(murmur2(plaza.id.encode()) & 0x7FFFFFFF) % PARTITIONS].append(plaza.id)
    ids = [str(uuid.uuid4()) for _ in range(args.dedup_ids)]
    print(f"{count} events over {len(network.plazas)} plazas, {args.seconds} s of event time")
    for partition, plazas in sorted(by_partition.items()):
        save, load = [], []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            blob = encode_checkpoint(
                PartitionCheckpoint(
                    version=FORMAT_VERSION,
                    offsets={"t": count},
                    plazas=[
                        PlazaCheckpoint(plaza, {"t": count}, pipeline.snapshot([plaza]))
                        for plaza in plazas
                    ],
                    dedup_ids=ids,
                )
            )
            save.append(time.perf_counter() - started)
            started = time.perf_counter()
            checkpoint = decode_checkpoint(blob)
            restored = Pipeline(network, PipelineConfig())
            for plaza_checkpoint in checkpoint.plazas:
                restored.restore(plaza_checkpoint.state, now_s=0.0)
            load.append(time.perf_counter() - started)
        detectors = sum(len(plaza.state) for plaza in checkpoint.plazas)
        print(
            f"partition {partition}: {len(plazas)} plazas, detectors {detectors / 1e3:.0f} kB, "
            f"with {len(ids)} dedup ids {len(blob) / 1e6:.2f} MB; "
            f"save {statistics.median(save) * 1e3:.1f} ms, "
            f"restore {statistics.median(load) * 1e3:.1f} ms (median of {ROUNDS})"
        )


if __name__ == "__main__":
    main()
