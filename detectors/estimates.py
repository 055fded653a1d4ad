"""What the queue estimator publishes: one approach's queue and wait at a 5 s boundary.

A record type apart from the estimator, so that msgspec reads its annotations from a
plain Python module even when the estimator is compiled (`tools/native.py`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from tollmon.events import Direction

Method = Literal["input_output", "headway"]


class QueueEstimate(msgspec.Struct, frozen=True, kw_only=True):
    """One approach's queue and wait at one 5 s boundary of event time."""

    ts: int
    plaza_id: str
    direction: Direction
    queue_veh: float
    queue_m: float
    wait_s: float
    arrivals_per_min: float
    departures_per_min: float
    open_lanes: int
    level: int
    spillback: bool
    method: Method
