"""Weigh scales as the weighing detectors see them: identity, accuracy class, estimated bias."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Station = Literal["entry", "exit"]

# OIML R134 / GB/T 21296 in-motion maximum permissible error, as a fraction of gross weight.
ACCURACY_CLASS_MPE: dict[float, float] = {
    0.2: 0.001,
    0.5: 0.0025,
    1.0: 0.005,
    2.0: 0.01,
    5.0: 0.025,
    10.0: 0.05,
}


def class_mpe_ratio(accuracy_class: float) -> float:
    """The in-motion maximum permissible error of an accuracy class, as a fraction of gross."""
    try:
        return ACCURACY_CLASS_MPE[float(accuracy_class)]
    except KeyError:
        raise ValueError(
            f"accuracy class {accuracy_class!r} is not one of OIML R134's "
            f"{sorted(ACCURACY_CLASS_MPE)}"
        ) from None


@dataclass(frozen=True, slots=True)
class ScaleInfo:
    """One configured scale: where it stands and how accurate its class promises to be."""

    scale_id: str
    plaza_id: str
    station: Station
    lane_id: str
    accuracy_class: float

    def __post_init__(self) -> None:
        class_mpe_ratio(self.accuracy_class)

    @property
    def mpe_ratio(self) -> float:
        """Maximum permissible in-motion error of this scale, as a fraction of gross."""
        return class_mpe_ratio(self.accuracy_class)


@dataclass(frozen=True, slots=True)
class ScaleBiasEstimate:
    """A scale's estimated multiplicative bias over the current window of pairs.

    `bias_ratio` is exp(b) - 1 with b the bias of ln(reading): +0.03 reads 3 % heavy.
    """

    scale_id: str
    plaza_id: str
    station: Station
    bias_ratio: float
    stderr_ratio: float
    pairs: int
    bias_log: float
    stderr_log: float

    def confident_excess(self, z: float, tolerance: float = 0.0) -> float:
        """How far |b| - z·SE lies beyond `tolerance` (positive: confidently beyond it)."""
        return abs(self.bias_log) - z * self.stderr_log - tolerance
