"""The network configuration (SPEC §3): what is accepted, and how every mistake is reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from tollmon.errors import ConfigError
from tollmon.network import (
    DirectionName,
    Network,
    Thresholds,
    load_network,
    mpe_ratio,
    parse_network,
    summarize,
)

TWO_PLAZAS = """
plazas:
  - id: P1
    name: 一号收费站
    road: G30
    lat: 43.8
    lon: 87.6
    directions:
      entry:
        lanes:
          - {id: "01", type: ETC}
          - {id: "02", type: MTC}
        detectors:
          - {id: P1-EN-D1, distance_m: 180, free_flow_s: 14.0}
        scales:
          - {id: P1-EN-S1, lane: "02", accuracy_class: 5}
      exit:
        lanes:
          - {id: "01", type: ETC}
          - {id: "02", type: MIXED}
        detectors:
          - {id: P1-EX-D1, distance_m: 250}
        scales:
          - {id: P1-EX-S1, lane: "02", accuracy_class: 2}
  - id: P2
    name: 二号收费站
    road: G7
    lat: 44.1
    lon: 87.9
    directions:
      entry:
        lanes:
          - {id: "01", type: ETC}
          - {id: "02", type: ETC}
          - {id: "03", type: MIXED}
        scales:
          - {id: P2-EN-S1, lane: "03", accuracy_class: 10}
"""

Mutation = Callable[[dict[str, Any]], None]


def two_plazas() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(TWO_PLAZAS)
    return data


def set_at(path: str, value: object) -> Mutation:
    """A change to the data at a dotted path (`plazas.0.lat`)."""
    *parents, last = (int(p) if p.isdigit() else p for p in path.split("."))

    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def delete_at(path: str) -> Mutation:
    *parents, last = (int(p) if p.isdigit() else p for p in path.split("."))

    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def problems_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_network(data, "test.yaml")
    assert caught.value.source == "test.yaml"
    return caught.value.problems


# --- the sample network ----------------------------------------------------------------


def test_sample_network_has_a_dozen_plazas_around_urumqi_on_g30_g7_g216(network: Network) -> None:
    assert len(network.plazas) >= 12
    assert {"G30", "G7", "G216"} <= {plaza.road for plaza in network.plazas}
    for plaza in network.plazas:
        assert 43.0 < plaza.lat < 44.5, plaza.id
        assert 86.5 < plaza.lon < 88.5, plaza.id


def test_sample_network_equips_both_sides_of_every_plaza_with_scales(network: Network) -> None:
    for plaza in network.plazas:
        assert [name for name, _ in plaza.approaches()] == ["entry", "exit"], plaza.id
        for name, approach in plaza.approaches():
            assert approach.scales, f"{plaza.id} {name}"
            assert 3 <= len(approach.lanes) <= 8, f"{plaza.id} {name}"


def test_sample_network_exercises_every_estimation_method(network: Network) -> None:
    approaches = [a for plaza in network.plazas for _, a in plaza.approaches()]
    lane_types = [lane.type for a in approaches for lane in a.lanes]
    detectors = [d for a in approaches for d in a.detectors]
    assert lane_types.count("ETC") > len(lane_types) / 2
    assert {"MTC", "MIXED"} <= set(lane_types)
    assert any(not a.detectors for a in approaches), "headway method needs a detector-less side"
    assert any(d.free_flow_s is None for d in detectors), "free-flow learning needs one unset"
    nearest = [min(a.detectors, key=lambda d: d.distance_m) for a in approaches if a.detectors]
    assert all(120 <= d.distance_m <= 300 for d in nearest)
    assert any(len(a.detectors) > 1 for a in approaches), "spillback needs a loop farther up"
    assert {s.accuracy_class for a in approaches for s in a.scales} == {2, 5, 10}


def test_summary_counts_plazas_lanes_detectors_and_scales() -> None:
    summary = summarize(parse_network(two_plazas(), "test.yaml"))

    assert summary.splitlines() == [
        "plazas: 2 on G30, G7",
        "approaches: 3 (1 without a detector, headway method)",
        "lanes: 7 (ETC 4, MTC 1, MIXED 2)",
        "detectors: 2",
        "scales: 3 (entry 2, exit 1)",
        "plazas with own thresholds: 0",
    ]


def test_summary_names_the_approaches_with_a_detector_farther_up() -> None:
    data = two_plazas()
    detectors = data["plazas"][0]["directions"]["entry"]["detectors"]
    detectors += [
        {"id": "P1-EN-D3", "distance_m": 700},
        {"id": "P1-EN-D2", "distance_m": 400},
    ]

    summary = summarize(parse_network(data, "test.yaml")).splitlines()

    assert summary[3] == (
        "detectors: 4 (1 approach with one farther up, for the queue behind the nearest;"
        " 1 between those, unused)"
    )


# --- mistakes --------------------------------------------------------------------------


def test_three_mistakes_in_a_file_are_all_reported_with_their_paths(tmp_path: Path) -> None:
    text = (
        TWO_PLAZAS.replace("{id: P1-EX-D1, distance_m: 250}", "{id: P1-EX-D1, distance_m: 0}")
        .replace('{id: "02", type: ETC}', '{id: "02", type: ECT}')
        .replace('lane: "03", accuracy_class: 10', 'lane: "07", accuracy_class: 10')
    )
    path = tmp_path / "network.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_network(path)

    assert caught.value.problems == [
        "plazas[0].directions.exit.detectors[0].distance_m: must be > 0",
        "plazas[1].directions.entry.lanes[1].type: must be ETC, MTC or MIXED",
        "plazas[1].directions.entry.scales[0].lane: no lane '07' in this direction",
    ]
    assert "3 error(s)" in str(caught.value)


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        pytest.param(
            set_at("plazas.0.directions.entry.lanes.1.type", "CASH"),
            "plazas[0].directions.entry.lanes[1].type: must be ETC, MTC or MIXED",
            id="unknown lane type",
        ),
        pytest.param(
            set_at("plazas.0.directions.entry.lanes.0.id", 1),
            'plazas[0].directions.entry.lanes[0].id: must be a string; quote it ("01")',
            id="unquoted lane id read as a number",
        ),
        pytest.param(
            set_at("plazas.0.id", "P 1"),
            "plazas[0].id: must be 1 to 32 letters, digits, '_', '.' or '-'",
            id="plaza id with a space",
        ),
        pytest.param(
            set_at("plazas.1.id", "P1"),
            "plazas[1].id: duplicate plaza id 'P1' (first at plazas[0].id)",
            id="duplicate plaza id",
        ),
        pytest.param(
            set_at("plazas.1.directions.entry.lanes.1.id", "01"),
            "plazas[1].directions.entry.lanes[1].id: duplicate lane id '01' "
            "(first at plazas[1].directions.entry.lanes[0].id)",
            id="duplicate lane id within a direction",
        ),
        pytest.param(
            set_at("plazas.1.directions.entry.detectors", [{"id": "P1-EN-D1", "distance_m": 90}]),
            "plazas[1].directions.entry.detectors[0].id: duplicate detector id 'P1-EN-D1' "
            "(first at plazas[0].directions.entry.detectors[0].id)",
            id="detector id reused at another plaza",
        ),
        pytest.param(
            set_at("plazas.0.directions.exit.scales.0.id", "P1-EN-S1"),
            "plazas[0].directions.exit.scales[0].id: duplicate scale id 'P1-EN-S1' "
            "(first at plazas[0].directions.entry.scales[0].id)",
            id="scale id reused in the other direction",
        ),
        pytest.param(
            set_at("plazas.0.directions.exit.scales.0.lane", "03"),
            "plazas[0].directions.exit.scales[0].lane: no lane '03' in this direction",
            id="scale on a lane that does not exist",
        ),
        pytest.param(
            set_at("plazas.0.directions.entry.detectors.0.free_flow_s", -1),
            "plazas[0].directions.entry.detectors[0].free_flow_s: must be > 0",
            id="negative free-flow time",
        ),
        pytest.param(
            set_at(
                "plazas.0.directions.entry.detectors",
                [
                    {"id": "P1-EN-D1", "distance_m": 180, "free_flow_s": 14.0},
                    {"id": "P1-EN-D2", "distance_m": 700, "free_flow_s": 12.0},
                ],
            ),
            "plazas[0].directions.entry.detectors[1].free_flow_s: must exceed 14 s, the"
            " free-flow time of the detector at 180 m (this one is at 700 m)",
            id="a farther detector reached sooner at free flow",
        ),
        pytest.param(
            set_at("plazas.0.directions.entry.detectors.0.approach_lanes", 0),
            "plazas[0].directions.entry.detectors[0].approach_lanes: must be >= 1",
            id="no approach lane",
        ),
        pytest.param(
            set_at("plazas.0.directions.entry.scales.0.accuracy_class", 3),
            "plazas[0].directions.entry.scales[0].accuracy_class: "
            "must be one of 0.2, 0.5, 1, 2, 5, 10",
            id="accuracy class outside OIML R134",
        ),
        pytest.param(
            set_at("plazas.0.lat", 91),
            "plazas[0].lat: must be between -90 and 90",
            id="latitude out of range",
        ),
        pytest.param(
            set_at("plazas.1.lon", -180.5),
            "plazas[1].lon: must be between -180 and 180",
            id="longitude out of range",
        ),
        pytest.param(
            set_at("plazas.1.directions", {}),
            "plazas[1].directions: needs an entry or an exit direction (or both)",
            id="plaza without directions",
        ),
        pytest.param(
            set_at("plazas.1.directions.entry.lanes", []),
            "plazas[1].directions.entry.lanes: must not be empty",
            id="direction without lanes",
        ),
        pytest.param(
            delete_at("plazas.1.name"),
            "plazas[1].name: required",
            id="missing name",
        ),
        pytest.param(
            delete_at("plazas"),
            "plazas: required",
            id="missing plazas",
        ),
        pytest.param(
            set_at("plazas.0.thresholds", {"severe_wait": 200}),
            "plazas[0].thresholds.severe_wait: unknown key; did you mean 'severe_wait_s'?",
            id="misspelt threshold",
        ),
        pytest.param(
            set_at("defaults", {"thresholds": {"pair_tolerance_ratio": 5}}),
            "defaults.thresholds.pair_tolerance_ratio: "
            "must be a fraction between 0 and 1, exclusive (5 % is 0.05)",
            id="percentage where a fraction is due",
        ),
        pytest.param(
            set_at("plazas.0.thresholds", {"busy_per_lane": 6}),
            "plazas[0].thresholds: busy_per_lane < congested_per_lane < severe_per_lane "
            "must hold, got 6, 5, 10",
            id="busy level above congested level",
        ),
        pytest.param(
            set_at("plazas.0.directions.entry.detector", []),
            "plazas[0].directions.entry.detector: unknown key; did you mean 'detectors'?",
            id="extra key one letter from a known key",
        ),
    ],
)
def test_each_mistake_is_reported_once_at_its_yaml_path(mutation: Mutation, expected: str) -> None:
    data = two_plazas()
    mutation(data)

    assert problems_of(data) == [expected]


@pytest.mark.parametrize(
    "data",
    [pytest.param(None, id="empty file"), pytest.param(["P1"], id="a list")],
)
def test_a_file_that_is_not_a_mapping_is_rejected(data: object) -> None:
    assert problems_of(data) == ["(top level): must be a mapping"]


def test_yaml_syntax_error_is_a_config_error_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    path.write_text("plazas:\n  - id: P1\n    lanes: [01, 02\n", encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_network(path)

    assert caught.value.source == str(path)
    [problem] = caught.value.problems
    assert problem.startswith("line 4, column 1: YAML syntax error:")


def test_repeated_yaml_key_is_reported_rather_than_silently_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "network.yaml"
    text = TWO_PLAZAS.replace("    road: G7\n", "    road: G7\n    road: G30\n")
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_network(path)

    line = text.splitlines().index("    road: G7") + 2  # 1-based, the line after
    assert caught.value.problems == [f"line {line}, column 5: duplicate key 'road'"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_network(tmp_path / "absent.yaml")


# --- what is accepted ------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(delete_at("plazas.0.directions.entry.detectors"), id="detectors absent"),
        pytest.param(set_at("plazas.0.directions.entry.detectors", []), id="detectors empty"),
        pytest.param(set_at("plazas.0.directions.entry.detectors", None), id="detectors blank"),
        pytest.param(delete_at("plazas.0.directions.exit.scales"), id="scales absent"),
        pytest.param(set_at("plazas.0.directions.exit.scales", []), id="scales empty"),
        pytest.param(set_at("plazas.0.directions.exit.scales", None), id="scales blank"),
        pytest.param(set_at("plazas.0.thresholds", {}), id="plaza thresholds empty"),
        pytest.param(set_at("plazas.0.thresholds", None), id="plaza thresholds blank"),
        pytest.param(set_at("defaults", {"thresholds": {}}), id="default thresholds empty"),
        pytest.param(set_at("defaults", {"vehicle_length_m": {"H": 16.5}}), id="one length"),
        pytest.param(set_at("plazas.0.stake", "K3712+500"), id="extra key on a plaza"),
        pytest.param(
            set_at("plazas.0.directions.entry.lanes.0.width_m", 3.75), id="extra key on a lane"
        ),
    ],
)
def test_optional_sections_and_extra_keys_are_accepted(mutation: Mutation) -> None:
    data = two_plazas()
    mutation(data)

    network = parse_network(data, "test.yaml")

    assert network.plaza_ids == {"P1", "P2"}


@pytest.mark.parametrize(("kept", "dropped"), [("entry", "exit"), ("exit", "entry")], ids=str)
def test_plaza_with_only_one_direction_is_accepted(
    kept: DirectionName, dropped: DirectionName
) -> None:
    data = two_plazas()
    del data["plazas"][0]["directions"][dropped]

    plaza = parse_network(data, "test.yaml").plaza("P1")

    assert plaza is not None
    assert [name for name, _ in plaza.approaches()] == [kept]
    assert plaza.approach(dropped) is None


def test_extra_keys_are_kept_for_whoever_needs_them() -> None:
    data = two_plazas()
    data["plazas"][0]["connector"] = "机场高速"

    plaza = parse_network(data, "test.yaml").plaza("P1")

    assert plaza is not None
    assert plaza.model_extra == {"connector": "机场高速"}


def test_network_cannot_be_modified_after_loading() -> None:
    network = parse_network(two_plazas(), "test.yaml")

    with pytest.raises(pydantic.ValidationError):
        network.plazas[0].lat = 0.0


# --- thresholds ------------------------------------------------------------------------


def test_builtin_thresholds_are_the_spec_defaults() -> None:
    t = Thresholds()

    assert (t.busy_per_lane, t.congested_per_lane, t.severe_per_lane) == (2, 5, 10)
    assert (t.congested_wait_s, t.severe_wait_s) == (120, 300)
    assert (t.congestion_raise_hold_s, t.congestion_resolve_hold_s) == (60, 120)
    assert t.target_utilisation == 0.85
    assert (t.etc_failure_ratio, t.etc_failure_factor, t.etc_p_value) == (0.05, 3, 0.001)
    assert (t.etc_window_attempts, t.etc_window_s, t.etc_min_attempts) == (200, 900, 30)
    assert (t.lane_stall_s, t.data_gap_s) == (120, 600)
    assert (t.pair_tolerance_ratio, t.min_discrepancy_kg) == (0.05, 1000)
    assert (t.overload_tolerance_ratio, t.unpaired_horizon_s) == (0.05, 72 * 3600)
    assert t.scale_drift_tolerance_ratio == 0.015


@pytest.mark.parametrize(
    ("axles", "limit_kg"),
    [(2, 18_000), (3, 25_000), (4, 31_000), (5, 43_000), (6, 49_000), (9, 49_000)],
    ids=str,
)
def test_overload_limit_follows_axle_count_with_six_or_more_sharing_one(
    axles: int, limit_kg: int
) -> None:
    assert Thresholds().overload_limit_kg(axles) == limit_kg


def test_plaza_thresholds_override_network_defaults_which_override_builtins() -> None:
    data = two_plazas()
    data["defaults"] = {"thresholds": {"congested_wait_s": 150, "lane_stall_s": 90}}
    data["plazas"][0]["thresholds"] = {"congested_wait_s": 90}

    network = parse_network(data, "test.yaml")
    p1, p2 = network.thresholds_for("P1"), network.thresholds_for("P2")

    assert (p1.congested_wait_s, p1.lane_stall_s, p1.severe_wait_s) == (90, 90, 300)
    assert (p2.congested_wait_s, p2.lane_stall_s, p2.severe_wait_s) == (150, 90, 300)


def test_overload_limit_overrides_merge_per_axle_count() -> None:
    data = two_plazas()
    data["defaults"] = {"thresholds": {"overload_limits_kg": {"6+": 46_000}}}
    data["plazas"][0]["thresholds"] = {"overload_limits_kg": {5: 42_000}}

    network = parse_network(data, "test.yaml")

    assert [network.thresholds_for("P1").overload_limit_kg(n) for n in (2, 5, 6)] == [
        18_000,
        42_000,
        46_000,
    ]
    assert network.thresholds_for("P2").overload_limit_kg(5) == 43_000


def test_thresholds_of_an_unknown_plaza_are_a_key_error(network: Network) -> None:
    with pytest.raises(KeyError):
        network.thresholds_for("NOWHERE")


# --- lookups ---------------------------------------------------------------------------


def test_approach_lanes_are_optional_on_a_detector() -> None:
    doc = two_plazas()
    set_at("plazas.0.directions.entry.detectors.0.approach_lanes", 3)(doc)
    network = parse_network(doc, "test.yaml")

    entry = network.plazas[0].approach("entry")
    exit_ = network.plazas[0].approach("exit")
    assert entry is not None
    assert exit_ is not None
    assert entry.detectors[0].approach_lanes == 3
    assert exit_.detectors[0].approach_lanes is None


def test_detector_resolves_to_its_plaza_direction_and_geometry() -> None:
    network = parse_network(two_plazas(), "test.yaml")

    site = network.detector("P1-EX-D1")

    assert site is not None
    assert (site.plaza_id, site.direction, site.distance_m, site.free_flow_s) == (
        "P1",
        "exit",
        250,
        None,
    )


def test_scale_resolves_to_its_lane_and_accuracy() -> None:
    network = parse_network(two_plazas(), "test.yaml")

    site = network.scale("P2-EN-S1")

    assert site is not None
    assert (site.plaza_id, site.direction, site.lane_id) == ("P2", "entry", "03")
    assert (site.accuracy_class, site.mpe_ratio) == (10, 0.05)


def test_lane_type_is_looked_up_per_plaza_direction_and_lane() -> None:
    network = parse_network(two_plazas(), "test.yaml")

    assert network.lane_type("P1", "entry", "02") == "MTC"
    assert network.lane_type("P1", "exit", "02") == "MIXED"
    assert network.lane_type("P2", "exit", "01") is None
    assert network.lane_type("P9", "entry", "01") is None


def test_unknown_ids_resolve_to_none(network: Network) -> None:
    assert network.plaza("NOWHERE") is None
    assert network.detector("NOWHERE") is None
    assert network.scale("NOWHERE") is None
    assert "NOWHERE" not in network.plaza_ids


@pytest.mark.parametrize(
    ("accuracy_class", "mpe"),
    [(0.2, 0.001), (0.5, 0.0025), (1, 0.005), (2, 0.01), (5, 0.025), (10, 0.05)],
    ids=str,
)
def test_maximum_permissible_error_follows_oiml_r134(accuracy_class: float, mpe: float) -> None:
    assert mpe_ratio(accuracy_class) == mpe


def test_queue_length_per_vehicle_follows_the_class_letter() -> None:
    lengths = parse_network(two_plazas(), "test.yaml").defaults.vehicle_length_m

    assert [lengths.length_m(c) for c in ("K1", "H6", "Z2")] == [7.5, 15.0, 12.0]
