"""Keep Python's cyclic garbage collector off the detectors' long-lived state.

A worker holds the state of every plaza it serves: windows, trips, books, metric
children; hundreds of thousands of objects that live for hours. Python's full
collections scan every one of them, and with the default thresholds one ran every
20-30 s under load and stopped the event loop for 0.16-0.58 s each time, one of the
stalls that set the event-to-output p99 above a few hundred plazas
(docs/profiling.md). In steady state those collections found almost no garbage.

So, every `every_s` seconds, the worker collects once and then freezes what
survived (`gc.freeze`): frozen objects are never scanned again, and the next
collections only walk what was allocated since. Reference counting still frees
frozen objects that are dropped; only a reference cycle among them would stay, so
when partitions leave (their state is dropped) everything is thawed and the next
collection sees it all once more.
"""

from __future__ import annotations

import gc
import logging
import time

from mode import Service

log = logging.getLogger(__name__)


class HeapFreezer(Service):
    """Collect and freeze the surviving heap at an interval; thaw when state leaves."""

    def __init__(self, every_s: float) -> None:
        super().__init__()
        if every_s <= 0:
            raise ValueError("the freeze interval must be positive")
        self._every_s = every_s

    @Service.task
    async def _freeze_periodically(self) -> None:
        while not self.should_stop:
            await self.sleep(self._every_s)
            if not self.should_stop:
                freeze()


def freeze() -> float:
    """Collect, then move every surviving tracked object out of the collector's reach.

    Returns the seconds the collection took (the event loop's pause).
    """
    started = time.perf_counter()
    found = gc.collect()
    gc.freeze()
    pause = time.perf_counter() - started
    log.debug("gc: %d unreachable, %d objects frozen, %.3f s", found, gc.get_freeze_count(), pause)
    return pause


def thaw() -> None:
    """Hand every frozen object back to the collector: their owner may drop them."""
    gc.unfreeze()
