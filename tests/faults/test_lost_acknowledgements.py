"""Faust loses the acknowledgements of input the worker took in (as it does for records
read back around a rebalance): the group's commit still reaches the end of the input.

Without that, the commit would wait below the hole for good: every restart or
rebalance would read the partition again from there, and consumer-lag dashboards
would show a lag that never drains.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import NO_ALERTMANAGER, Outcome, send, settle, unconsumed
from tests.integration.conftest import Stack, WorkerProcess, wait_until
from tollmon.events import Event

pytestmark = [pytest.mark.integration, pytest.mark.faults]

LOST = range(20, 40)  # offsets of every input partition whose acknowledgements are lost

# Imported by the worker's interpreter at start-up (a `sitecustomize` on its path): its
# Faust consumer forgets the acknowledgements of those offsets.
LOSE_ACKS = textwrap.dedent(
    f"""
    import faust.transport.consumer as consumer

    _ack = consumer.Consumer.ack

    def ack(self, message):
        if ".toll." in message.topic and {LOST.start} <= message.offset < {LOST.stop}:
            message.acked = True
            return False
        return _ack(self, message)

    consumer.Consumer.ack = ack
    """
)


def test_input_whose_acknowledgements_were_lost_is_committed_all_the_same(
    stack: Stack,
    start_worker: Callable[..., WorkerProcess],
    valid_stream: list[Event],
    clean_outcome: Outcome,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(LOSE_ACKS)
    worker = start_worker(PYTHONPATH=str(inject), **NO_ALERTMANAGER)
    send(stack, worker.prefix, valid_stream)
    outcome = settle(stack, worker, valid=len(valid_stream), invalid=0)
    assert outcome.estimates_differing_from(clean_outcome) == []
    assert outcome.alert_ids == clean_outcome.alert_ids

    counted_at = time.monotonic()
    wait_until(
        lambda: not unconsumed(stack, worker.prefix),
        30,
        "the group's commit at the end of every input partition",
        lambda: unconsumed(stack, worker.prefix),
    )
    log = worker.log_path.read_text(errors="replace")
    assert "commit stuck at" in log, "no commit was ever stuck: the fault was not injected"
    record_property("fault", "Faust loses input acknowledgements")
    record_property("injected", f"offsets {LOST.start}..{LOST.stop - 1} of each partition")
    record_property("lost", 0)
    record_property("alert_ids_diverged", len(outcome.alert_ids ^ clean_outcome.alert_ids))
    record_property("recovery_s", round(time.monotonic() - counted_at, 1))
