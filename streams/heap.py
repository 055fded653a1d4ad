"""Keep Python's cyclic garbage collector off the detectors' long-lived state.

A worker holds the state of every plaza it serves: windows, trips, books, metric
children; hundreds of thousands of objects that live for hours. Python's full
collections scan every one of them, and under load one runs every few seconds. Left
alone they stopped the event loop for 0.16-0.58 s each at a few hundred plazas, and
freezing the heap once a minute still left them growing from 0.05 to 0.47 s within each
minute at 2,800 plazas (docs/profiling.md). In steady state they find almost no garbage.

So after every full collection the worker freezes what survived (`gc.freeze`): frozen
objects are never scanned again, and each full collection only walks what survived
since the one before. Reference counting still frees frozen objects that are dropped;
only a reference cycle among them would stay, so when partitions leave (their state is
dropped) everything is thawed and the next full collection sees it all once more.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from mode import Service

log = logging.getLogger(__name__)

OLDEST = 2  # the generation a full collection is reported under


class HeapFreezer(Service):
    """While running, freeze the surviving heap after every full collection."""

    async def on_start(self) -> None:
        freeze()
        if freeze_after_full_collections not in gc.callbacks:
            gc.callbacks.append(freeze_after_full_collections)

    async def on_stop(self) -> None:
        if freeze_after_full_collections in gc.callbacks:
            gc.callbacks.remove(freeze_after_full_collections)


def freeze_after_full_collections(phase: str, info: dict[str, Any]) -> None:
    """A `gc.callbacks` hook: once a full collection is done, freeze what it left.

    The collection is over at "stop" (its lists merged back), so moving every tracked
    object to the permanent generation is safe; it runs in whichever thread allocated.
    """
    if phase == "stop" and info["generation"] == OLDEST:
        gc.freeze()


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
