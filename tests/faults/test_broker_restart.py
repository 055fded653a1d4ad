"""The broker crashes mid-stream and comes back: the worker reconnects by itself and
loses no event; its estimates and alert ids equal an undisturbed run's.

The shared broker is never restarted: this case runs a broker of its own (same jars,
its own ports and data directory), kills it with SIGKILL and starts it again on the
same data, as a crashed broker would be restarted by its supervisor.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Outcome, dead_letter_reasons, send, settle
from tests.integration.conftest import Stack, launch_worker, wait_until
from tests.integration.private_broker import PrivateBroker, free_port, skip_without_kafka_jars
from tollmon.events import Event

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DOWN_S = 8  # long enough for every client to notice the broker is gone


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    skip_without_kafka_jars()
    broker = PrivateBroker(tmp_path / "broker")
    broker.format()
    broker.start()
    yield broker
    broker.stop()


def test_worker_reconnects_after_a_broker_crash_and_loses_no_event(
    private_broker: PrivateBroker,
    valid_stream: list[Event],
    clean_outcome: Outcome,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    stack = Stack(private_broker.bootstrap, prometheus_url="", alertmanager_url="")
    worker = launch_worker(
        stack, tmp_path / "worker", port=free_port(), TOLLMON_ALERTMANAGER_URL=""
    )
    try:
        half = len(valid_stream) // 2
        send(stack, worker.prefix, valid_stream[:half])
        wait_until(
            lambda: worker.total("tollmon_events_total") == half, 45, "the first half counted"
        )
        private_broker.stop(signal.SIGKILL)
        time.sleep(DOWN_S)
        assert worker.process.poll() is None, f"worker died with the broker:\n{worker.log_tail()}"
        private_broker.start()
        up_at = time.monotonic()
        send(stack, worker.prefix, valid_stream[half:])
        wait_until(
            lambda: worker.total("tollmon_events_total") > half,
            60,
            "events after the restart counted",
            lambda: worker.total("tollmon_events_total"),
        )
        recovery_s = time.monotonic() - up_at
        outcome = settle(stack, worker, valid=len(valid_stream), invalid=None, timeout=60)
        redelivered = dead_letter_reasons(stack, worker.prefix)
    finally:
        worker.stop()

    record_property("fault", f"broker killed (SIGKILL) mid-stream, restarted after {DOWN_S} s")
    record_property("injected", 1)
    record_property("lost", len(valid_stream) - outcome.valid_events)
    record_property("alert_ids_diverged", len(outcome.alert_ids ^ clean_outcome.alert_ids))
    record_property("recovery_s", round(recovery_s, 1))
    record_property("redelivered", len(redelivered))
    # Events read again after the restart (offsets not yet committed) are duplicates.
    assert set(redelivered) <= {"duplicate"}
    assert outcome.valid_events == len(valid_stream)
    assert outcome.alert_ids == clean_outcome.alert_ids
    differing = outcome.estimates_differing_from(clean_outcome)
    assert not differing, f"{len(differing)} estimates differ, the first: {differing[:3]}"
