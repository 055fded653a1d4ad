"""Detector tuning (SPEC §4): built-in defaults, overridable network-wide and per plaza."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PositiveFloat,
    PositiveInt,
)

# Gross-weight limits by axle count (GB 1589) live with the overload detector.
from detectors.overload import DEFAULT_OVERLOAD_LIMITS_KG, limit_for_axles


def _fraction(value: float) -> float:
    if not 0 < value < 1:
        raise ValueError("must be a fraction between 0 and 1, exclusive (5 % is 0.05)")
    return value


def _axle_count(key: object) -> int:
    text = str(key).strip().removesuffix("+")
    if isinstance(key, bool) or not text.isdigit() or not 2 <= int(text) <= 10:
        raise ValueError(f"key {key!r} must be an axle count from 2 to 10 (or '6+')")
    return int(text)


def _axle_table(value: object) -> object:
    """Turn `{2: 18000, 6+: 49000}` into sorted (axles, kg) pairs; tuples pass unchanged."""
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("must be a mapping of axle count to kg, e.g. {2: 18000, 6+: 49000}")
    table: dict[int, int] = {}
    for key, kg in value.items():
        axles = _axle_count(key)
        if isinstance(kg, bool) or not isinstance(kg, int | float) or not 0 < kg < 200_000:
            raise ValueError(f"limit for {key} axles must be a weight in kg below 200000")
        table[axles] = int(kg)
    return tuple(sorted(table.items()))


Fraction = Annotated[float, AfterValidator(_fraction)]
AxleTable = Annotated[tuple[tuple[int, int], ...], BeforeValidator(_axle_table)]


class Thresholds(BaseModel):
    """Every tunable number of the detectors, in base units (seconds, kg, fractions)."""

    # A misspelt threshold would silently keep its default, so unknown keys are errors here.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # §4.1 congestion levels: vehicles waiting per open lane, and mean wait.
    busy_per_lane: PositiveFloat = 2.0
    congested_per_lane: PositiveFloat = 5.0
    severe_per_lane: PositiveFloat = 10.0
    congested_wait_s: PositiveFloat = 120.0
    severe_wait_s: PositiveFloat = 300.0
    congestion_raise_hold_s: PositiveFloat = 60.0
    congestion_resolve_hold_s: PositiveFloat = 120.0
    target_utilisation: Fraction = 0.85
    # §4.2 lane health.
    etc_failure_ratio: Fraction = 0.05
    etc_failure_factor: PositiveFloat = 3.0
    etc_window_attempts: PositiveInt = 200
    etc_window_s: PositiveFloat = 15 * 60.0
    etc_p_value: Fraction = 0.001
    etc_min_attempts: PositiveInt = 30
    lane_stall_s: PositiveFloat = 120.0
    data_gap_s: PositiveFloat = 600.0
    # §4.3 weighing.
    pair_tolerance_ratio: Fraction = 0.05
    min_discrepancy_kg: PositiveFloat = 1000.0
    overload_limits_kg: AxleTable = DEFAULT_OVERLOAD_LIMITS_KG
    overload_tolerance_ratio: Fraction = 0.05
    unpaired_horizon_s: PositiveFloat = 72 * 3600.0
    scale_drift_tolerance_ratio: Fraction = 0.015

    def overload_limit_kg(self, axles: int) -> int:
        """Legal gross weight for a vehicle with this many axles."""
        return limit_for_axles(self.overload_limits_kg, axles)

    def overridden_by(self, override: Thresholds) -> Thresholds:
        """These thresholds with every field the override set explicitly replaced.

        Axle limits merge per axle count, so overriding the 5-axle limit keeps the others.
        """
        update = {name: getattr(override, name) for name in override.model_fields_set}
        if "overload_limits_kg" in update:
            merged = dict(self.overload_limits_kg) | dict(override.overload_limits_kg)
            update["overload_limits_kg"] = tuple(sorted(merged.items()))
        return self.model_copy(update=update)

    def inconsistencies(self) -> list[str]:
        """Contradictions between fields that each look valid alone (e.g. busy above congested)."""
        problems = []
        if not self.busy_per_lane < self.congested_per_lane < self.severe_per_lane:
            problems.append(
                "busy_per_lane < congested_per_lane < severe_per_lane must hold, got "
                f"{self.busy_per_lane:g}, {self.congested_per_lane:g}, {self.severe_per_lane:g}"
            )
        if not self.congested_wait_s < self.severe_wait_s:
            problems.append(
                "congested_wait_s must be below severe_wait_s, got "
                f"{self.congested_wait_s:g} and {self.severe_wait_s:g}"
            )
        if self.etc_min_attempts > self.etc_window_attempts:
            problems.append(
                f"etc_min_attempts ({self.etc_min_attempts}) must not exceed "
                f"etc_window_attempts ({self.etc_window_attempts})"
            )
        limits = [kg for _, kg in self.overload_limits_kg]
        if limits != sorted(limits):
            problems.append("overload_limits_kg must not decrease as axles increase")
        return problems
