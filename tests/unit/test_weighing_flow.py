"""Weighing wired for the network: trips, overloads and the scale self-check end to end."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from tollmon.checkpoint import CheckpointError
from tollmon.events import Event, WeighMeasurement
from tollmon.network import Network
from tollmon.pipeline import Pipeline
from tollmon.trips import TripProfile, generate_trips
from tollmon.weighing_flow import (
    BIAS_EVERY_MS,
    InProcessWeighing,
    decode_bias_checkpoint,
    encode_bias_checkpoint,
)

T0_MS = 1_764_300_000_000


def run(network: Network, events: list[Event]) -> tuple[Counter[str], Counter[str], list[str]]:
    weighing, pipeline = InProcessWeighing(network), Pipeline(network)
    alerts: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    biased: list[str] = []
    for event in events:
        alerts.update(a.kind for a in pipeline.process(event, event.ts / 1000).alerts)
        if isinstance(event, WeighMeasurement):
            out = weighing.on_pairing(weighing.book.add(event))
            outcomes.update(outcome for _, outcome in out.outcomes)
            for alert in out.alerts:
                alerts[alert.kind] += 1
                if alert.kind == "SCALE_BIAS" and alert.status == "firing":
                    biased.append(alert.subject)
                    assert alert.started_at % BIAS_EVERY_MS == 0
    return alerts, outcomes, biased


@pytest.fixture(scope="module")
def entry_scale(network: Network) -> str:
    return next(s.scale_id for s in network.scale_sites if s.direction == "entry")


def test_every_trip_pairs_and_a_clean_network_raises_no_weighing_alert(network: Network) -> None:
    events = list(generate_trips(network, T0_MS, 3 * 3600, TripProfile(1200), seed=2))
    trips = len({e.pass_id for e in events if isinstance(e, WeighMeasurement)})
    alerts, outcomes, biased = run(network, events)
    assert outcomes["matched"] + outcomes["discrepant"] == trips
    assert biased == []
    assert alerts["OVERLOAD_ADMITTED"] == 0


def test_a_biased_entry_scale_is_named_and_discrepancies_follow_it(
    network: Network, entry_scale: str
) -> None:
    profile = TripProfile(3000, scale_bias={entry_scale: 0.05})
    events = list(generate_trips(network, T0_MS, 4 * 3600, profile, seed=3))
    _, _, biased = run(network, events)
    assert biased == [entry_scale]


def test_admitted_overloads_raise_an_alert_each(network: Network) -> None:
    profile = TripProfile(1200, overload_admitted_share=0.05)
    events = list(generate_trips(network, T0_MS, 3600, profile, seed=4))
    alerts, _, _ = run(network, events)
    assert alerts["OVERLOAD_ADMITTED"] >= 20


def test_the_assessor_says_beforehand_which_pairs_refresh_the_bias_fit(network: Network) -> None:
    """The worker runs exactly those pairs off its event loop: the fit is the costly part."""
    weighing = InProcessWeighing(network)
    events = list(generate_trips(network, T0_MS, 1800, TripProfile(1200), seed=5))
    announced = refreshed = 0
    for event in events:
        if not isinstance(event, WeighMeasurement):
            continue
        pair = weighing.book.add(event).pair
        if pair is None:
            continue
        fits = weighing.assessor.fits_before(pair)
        out = weighing.assessor.on_pair(pair)
        announced += fits
        refreshed += bool(out.biases)
        assert fits == bool(out.biases)
    assert refreshed >= 20  # about one refresh a minute over half an hour


def test_an_assessor_restored_from_its_checkpoint_goes_on_as_if_never_stopped(
    network: Network, entry_scale: str
) -> None:
    """A worker that takes over the pairs restores the bias window, its alerts and the
    evaluation grid from the checkpoint's bytes: the same alerts and biases follow."""
    profile = TripProfile(3000, scale_bias={entry_scale: 0.05})
    events = list(generate_trips(network, T0_MS, 4 * 3600, profile, seed=3))
    weighing = InProcessWeighing(network)
    pairs = [
        pair
        for e in events
        if isinstance(e, WeighMeasurement) and (pair := weighing.book.add(e).pair) is not None
    ]
    half = len(pairs) // 2
    uninterrupted = InProcessWeighing(network).assessor
    for pair in pairs[:half]:
        uninterrupted.on_pair(pair)
    saved = encode_bias_checkpoint(uninterrupted.checkpoint(pairs_offset=half - 1))
    restored = InProcessWeighing(network).assessor
    restored.restore(decode_bias_checkpoint(saved))

    assert decode_bias_checkpoint(saved).pairs_offset == half - 1
    alerts_after: dict[str, list[tuple[str, str, int]]] = {"uninterrupted": [], "restored": []}
    biases_after: dict[str, list[tuple[str, float, int]]] = {"uninterrupted": [], "restored": []}
    for pair in pairs[half:]:
        for name, assessor in (("uninterrupted", uninterrupted), ("restored", restored)):
            out = assessor.on_pair(pair)
            alerts_after[name] += [(a.alert_id, a.status, a.started_at) for a in out.alerts]
            biases_after[name] += [(b.scale_id, b.bias_ratio, b.pairs) for b in out.biases]
    assert alerts_after["restored"] == alerts_after["uninterrupted"]
    assert biases_after["restored"] == biases_after["uninterrupted"]
    assert biases_after["restored"]
    assert uninterrupted.estimator.state() == restored.estimator.state()
    # The biased scale was firing when saved: the restored assessor holds that alert, so it
    # neither raises it again under a new id nor forgets to resolve it.
    firing = decode_bias_checkpoint(saved).state.firing
    assert [a.subject for a in firing] == [entry_scale]


def test_a_checkpoint_of_another_format_is_refused(network: Network) -> None:
    assessor = InProcessWeighing(network).assessor
    saved = assessor.checkpoint(pairs_offset=0)
    stale = encode_bias_checkpoint(msgspec.structs.replace(saved, version=saved.version - 1))
    with pytest.raises(CheckpointError):
        decode_bias_checkpoint(stale)
    with pytest.raises(CheckpointError):
        decode_bias_checkpoint(b"not a checkpoint")


def test_a_checkpoint_of_scales_the_network_no_longer_has_is_refused(network: Network) -> None:
    events = list(generate_trips(network, T0_MS, 1800, TripProfile(1200), seed=6))
    weighing = InProcessWeighing(network)
    for event in events:
        if isinstance(event, WeighMeasurement):
            weighing.on_pairing(weighing.book.add(event))
    saved = weighing.assessor.checkpoint(pairs_offset=10)
    assert saved.state.scale_ids
    renamed = msgspec.structs.replace(
        saved,
        state=msgspec.structs.replace(
            saved.state, scale_ids=[f"{s}-OLD" for s in saved.state.scale_ids]
        ),
    )
    assessor = InProcessWeighing(network).assessor
    with pytest.raises(ValueError, match="not in the network"):
        assessor.restore(renamed)
    assert assessor.estimator.state().scale_ids == []
