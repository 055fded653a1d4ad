"""Network self-check of weigh scales (SPEC §4.3): robust bias of every scale from trip pairs.

Each usable pair gives y = ln(exit/entry) = b_exit - b_entry + noise + load change. Over a
sliding window the biases b solve a weighted least-squares problem on the graph of scales
(one edge per pair). Load changes are rare but large and one-sided, so the fit is an
M-estimate: Huber IRLS from zero to find the bulk, then Tukey's biweight, which gives
gross load changes no weight at all. Only differences are observed, so each connected group
of scales is anchored at its median scale. The stream agent calls `add_pair` per pair and
`evaluate(ts)` on a deterministic event-time cadence (every N pairs, or each minute of event
time) so that a replay raises the same alerts with the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.sparse import csgraph
from scipy.sparse.linalg import cg, splu

from detectors.alerts import Alert, EvidenceValue, new_alert
from detectors.scales import ScaleBiasEstimate, ScaleInfo
from detectors.weighing import WeighPair

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ScaleBiasConfig:
    """Tuning of the scale-bias estimator and its SCALE_BIAS alert."""

    tolerance_ratio: float = 0.015
    # 99 % one-sided confidence that the bias is beyond tolerance, as SPEC §4.3 asks.
    z: float = 2.58
    # A pair stays in the window while it is among the last N of either of its scales: busy
    # scales then look back hours, quiet ones days, and a step shows after ~N/2 pairs.
    pairs_per_scale: int = 200
    window_s: float = 7 * 86_400.0
    min_pairs: int = 30
    # Resolve only once clearly back inside, so an estimate near the line does not flap.
    resolve_margin_ratio: float = 0.002
    # Legitimate small changes between entry and exit (fuel, water, snow) that no scale class
    # explains, as a standard deviation of ln(exit/entry).
    load_change_sigma: float = 0.003
    huber_k: float = 1.345
    tukey_c: float = 4.685
    max_iterations: int = 50
    # Iterations stop once no bias moves by more than this (log units; 1e-6 is 0.0001 %).
    tolerance_step: float = 1e-6
    # Up to this many scales the variances are the exact diagonal of the pseudo-inverse (a
    # dense inverse, about a second at 2,000); above, a fixed-seed Hutchinson estimate.
    exact_variance_max_scales: int = 2_000


def class_sigma(scale: ScaleInfo) -> float:
    """Standard deviation of one in-motion reading: the class MPE is about two sigma."""
    return scale.mpe_ratio / 2.0


class _Window:
    """Growable columns of the pairs in the window (numpy, so the fit is vectorised)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.entry = np.zeros(capacity, np.int64)
        self.exit = np.zeros(capacity, np.int64)
        self.y = np.zeros(capacity, np.float64)
        self.ts = np.zeros(capacity, np.int64)
        self.seq_entry = np.zeros(capacity, np.int64)
        self.seq_exit = np.zeros(capacity, np.int64)
        self.size = 0

    def append(self, entry: int, exit_: int, y: float, ts: int, seq_e: int, seq_x: int) -> None:
        if self.size == len(self.y):
            self._resize(2 * len(self.y))
        i = self.size
        self.entry[i], self.exit[i], self.y[i], self.ts[i] = entry, exit_, y, ts
        self.seq_entry[i], self.seq_exit[i] = seq_e, seq_x
        self.size += 1

    def keep(self, mask: npt.NDArray[np.bool_]) -> None:
        n = int(mask.sum())
        for name in ("entry", "exit", "y", "ts", "seq_entry", "seq_exit"):
            column = getattr(self, name)
            column[:n] = column[: self.size][mask]
        self.size = n

    def _resize(self, capacity: int) -> None:
        for name in ("entry", "exit", "y", "ts", "seq_entry", "seq_exit"):
            column = getattr(self, name)
            grown = np.zeros(capacity, column.dtype)
            grown[: self.size] = column[: self.size]
            setattr(self, name, grown)


class ScaleBiasState(msgspec.Struct, frozen=True, kw_only=True):
    """The estimator's whole state, for a changelog or a checkpoint."""

    scale_ids: list[str]
    seen: list[int]
    entry: list[int]
    exit: list[int]
    y: list[float]
    ts: list[int]
    seq_entry: list[int]
    seq_exit: list[int]
    firing: list[Alert]


class ScaleBiasEstimator:
    """Window of usable pairs, the robust network fit over it, and the SCALE_BIAS alerts."""

    def __init__(
        self, scales: Mapping[str, ScaleInfo], config: ScaleBiasConfig = ScaleBiasConfig()
    ) -> None:
        self.scales = dict(scales)
        self.config = config
        self._index: dict[str, int] = {}
        self._ids: list[str] = []
        self._seen: list[int] = []
        self._window = _Window()
        self._latest_ts = 0
        self._firing: dict[str, Alert] = {}
        self._latest_estimates: list[ScaleBiasEstimate] = []

    # ---- input ---------------------------------------------------------------------------

    def add_pair(self, pair: WeighPair) -> bool:
        """Take one pair into the window; False when it is unusable for bias.

        Unusable: a non-OK reading, a changed axle count (the vehicle or its load changed),
        an unconfigured scale, or the same scale at both ends (it would see no bias).
        """
        if not pair.both_ok or pair.entry.axles != pair.exit.axles:
            return False
        return self.add_observation(
            pair.entry.scale_id,
            pair.exit.scale_id,
            math.log(pair.exit.gross_kg / pair.entry.gross_kg),
            pair.exit.ts,
        )

    def add_observation(self, entry_scale: str, exit_scale: str, y: float, ts: int) -> bool:
        """Take one observation y = ln(exit/entry) of the named scales at event time ts."""
        if entry_scale == exit_scale or entry_scale not in self.scales:
            return False
        if exit_scale not in self.scales:
            return False
        e, x = self._column(entry_scale), self._column(exit_scale)
        self._seen[e] += 1
        self._seen[x] += 1
        if self._window.size == len(self._window.y):
            self._trim()
        self._window.append(e, x, y, ts, self._seen[e], self._seen[x])
        self._latest_ts = max(self._latest_ts, ts)
        return True

    def _column(self, scale_id: str) -> int:
        column = self._index.get(scale_id)
        if column is None:
            column = self._index[scale_id] = len(self._ids)
            self._ids.append(scale_id)
            self._seen.append(0)
        return column

    def _trim(self) -> None:
        """Drop pairs that left the window (older than window_s, and not recent for either
        scale); called before the buffers grow so memory stays bounded."""
        w = self._window
        n = w.size
        seen = np.asarray(self._seen, np.int64)
        cutoff = seen - self.config.pairs_per_scale
        recent = (w.seq_entry[:n] > cutoff[w.entry[:n]]) | (w.seq_exit[:n] > cutoff[w.exit[:n]])
        young = w.ts[:n] >= self._latest_ts - int(self.config.window_s * 1000)
        w.keep(recent & young)

    # ---- estimate ------------------------------------------------------------------------

    def estimate(self) -> list[ScaleBiasEstimate]:
        """Every scale's bias over the current window, anchored at each group's median scale."""
        self._trim()
        w = self._window
        n = w.size
        if n == 0:
            return []
        active, inverse = np.unique(np.concatenate([w.entry[:n], w.exit[:n]]), return_inverse=True)
        entry, exit_ = inverse[:n], inverse[n:]
        sigma = np.array([class_sigma(self.scales[self._ids[c]]) for c in active])
        prior = 1.0 / (sigma[entry] ** 2 + sigma[exit_] ** 2 + self.config.load_change_sigma**2)
        fit = _robust_fit(entry, exit_, w.y[:n], prior, len(active), self.config)
        pairs = np.bincount(entry, minlength=len(active)) + np.bincount(
            exit_, minlength=len(active)
        )
        bias, variance = _anchor_at_median(fit, pairs, self.config.min_pairs)
        se = np.sqrt(variance)
        estimates = []
        for k, column in enumerate(active):
            scale = self.scales[self._ids[column]]
            estimates.append(
                ScaleBiasEstimate(
                    scale_id=scale.scale_id,
                    plaza_id=scale.plaza_id,
                    station=scale.station,
                    bias_ratio=float(np.expm1(bias[k])),
                    stderr_ratio=float(np.exp(bias[k]) * se[k]),
                    pairs=int(pairs[k]),
                    bias_log=float(bias[k]),
                    stderr_log=float(se[k]),
                )
            )
        return estimates

    # ---- alerts --------------------------------------------------------------------------

    def evaluate(self, ts: int, fitted: list[ScaleBiasEstimate] | None = None) -> list[Alert]:
        """SCALE_BIAS alerts that start or resolve at event time ts (transitions only).

        `fitted`: what `estimate()` returns for the current window, if the caller had it
        computed elsewhere (the worker runs the fit in a forked child).
        """
        if fitted is None:
            fitted = self.estimate()
        else:
            self._trim()  # as estimate() would have: the window stays bounded
        self._latest_estimates = fitted
        by_scale = {e.scale_id: e for e in self._latest_estimates}
        resolved = [
            self._resolve(alert, by_scale.get(scale_id), ts)
            for scale_id, alert in self._firing.items()
        ]
        changes = [alert for alert in resolved if alert is not None]
        for alert in changes:
            del self._firing[alert.subject]
        for scale_id, estimate in by_scale.items():
            if scale_id not in self._firing and self._confidently_beyond(estimate):
                self._firing[scale_id] = self._alert(estimate, ts)
                changes.append(self._firing[scale_id])
        return changes

    def _confidently_beyond(self, estimate: ScaleBiasEstimate, margin: float = 0.0) -> bool:
        cfg = self.config
        return estimate.pairs >= cfg.min_pairs and (
            estimate.confident_excess(cfg.z, cfg.tolerance_ratio - margin) > 0
        )

    def _resolve(self, alert: Alert, estimate: ScaleBiasEstimate | None, ts: int) -> Alert | None:
        """The resolved alert when its scale is no longer confidently biased, else None."""
        if estimate is None:
            return alert.resolved(ts)
        if self._confidently_beyond(estimate, self.config.resolve_margin_ratio):
            return None
        return alert.resolved(ts, {**alert.evidence, **_bias_evidence(estimate)})

    def latest_estimates(self) -> list[ScaleBiasEstimate]:
        """The estimates the last `evaluate` computed, so a caller need not fit twice."""
        return list(self._latest_estimates)

    def firing(self) -> list[Alert]:
        """The SCALE_BIAS alerts currently firing (for re-sending to Alertmanager)."""
        return list(self._firing.values())

    def _alert(self, estimate: ScaleBiasEstimate, ts: int) -> Alert:
        scale = self.scales[estimate.scale_id]
        side_zh = "入口" if scale.station == "entry" else "出口"
        heavy = estimate.bias_ratio > 0
        reads_en = "heavy" if heavy else "light"
        reads_zh = "偏重" if heavy else "偏轻"
        if scale.station == "entry":
            consequence = (
                "it may refuse legal trucks as overloaded"
                if heavy
                else "it may admit overloaded trucks"
            )
        else:
            consequence = "exit re-weighings disagree with entry weighings"
        return new_alert(
            kind="SCALE_BIAS",
            severity="warning",
            plaza_id=scale.plaza_id,
            subject=scale.scale_id,
            started_at=ts,
            summary_zh=f"{side_zh}称重设备{scale.scale_id}（{scale.plaza_id}，车道{scale.lane_id}）"
            f"{reads_zh}{abs(estimate.bias_ratio):.1%}"
            f"（±{estimate.stderr_ratio:.1%}，{estimate.pairs}对称重）",
            summary_en=f"{scale.station.capitalize()} scale {scale.scale_id} at "
            f"{scale.plaza_id} lane {scale.lane_id} reads {reads_en} by "
            f"{abs(estimate.bias_ratio):.1%} (SE {estimate.stderr_ratio:.1%}, "
            f"{estimate.pairs} pairs)",
            evidence={
                "scale": scale.scale_id,
                "station": scale.station,
                "lane": scale.lane_id,
                "accuracy_class": scale.accuracy_class,
                "tolerance_ratio": self.config.tolerance_ratio,
                **_bias_evidence(estimate),
            },
            recommendation=f"Inspect and recalibrate {scale.station} scale {scale.scale_id} "
            f"at {scale.plaza_id}; until then {consequence}.",
        )

    # ---- state ---------------------------------------------------------------------------

    def state(self) -> ScaleBiasState:
        """The whole state as a serialisable struct."""
        self._trim()
        w, n = self._window, self._window.size
        return ScaleBiasState(
            scale_ids=list(self._ids),
            seen=list(self._seen),
            entry=w.entry[:n].tolist(),
            exit=w.exit[:n].tolist(),
            y=w.y[:n].tolist(),
            ts=w.ts[:n].tolist(),
            seq_entry=w.seq_entry[:n].tolist(),
            seq_exit=w.seq_exit[:n].tolist(),
            firing=list(self._firing.values()),
        )

    @classmethod
    def from_state(
        cls,
        state: ScaleBiasState,
        scales: Mapping[str, ScaleInfo],
        config: ScaleBiasConfig = ScaleBiasConfig(),
    ) -> ScaleBiasEstimator:
        """An estimator continuing from a saved state."""
        estimator = cls(scales, config)
        estimator._ids = list(state.scale_ids)
        estimator._index = {s: i for i, s in enumerate(state.scale_ids)}
        estimator._seen = list(state.seen)
        for row in zip(
            state.entry, state.exit, state.y, state.ts, state.seq_entry, state.seq_exit, strict=True
        ):
            estimator._window.append(*row)
        estimator._latest_ts = max(state.ts, default=0)
        estimator._firing = {a.subject: a for a in state.firing}
        return estimator


def _bias_evidence(estimate: ScaleBiasEstimate) -> dict[str, EvidenceValue]:
    return {
        "bias_ratio": round(estimate.bias_ratio, 5),
        "stderr_ratio": round(estimate.stderr_ratio, 5),
        "pairs": estimate.pairs,
        "lower_bound_ratio": round(abs(estimate.bias_log) - 2.58 * estimate.stderr_log, 5),
    }


# ---- the robust fit ------------------------------------------------------------------------

# Rademacher probes of the Hutchinson variance estimate: its relative error falls as
# 1/sqrt(probes); 64 gave a 3.6 % worst and 1.2 % rms error on 400 scales.
VARIANCE_PROBES = 64
# Above this many scales the reweighted solves use CG instead of a sparse LU.
DIRECT_SOLVE_MAX_SCALES = 600


@dataclass(frozen=True, slots=True)
class _Fit:
    bias: FloatArray
    variance: FloatArray
    component: IntArray


class _Network:
    """The graph of scales: its groups and one grounded scale per group.

    Only differences are observed, so each group's Laplacian has a free offset; removing
    one scale per group (its bias fixed at zero) leaves a positive definite system that a
    sparse LU factorises, and the group mean is subtracted afterwards.
    """

    def __init__(self, entry: IntArray, exit_: IntArray, m: int) -> None:
        self.entry, self.exit, self.m = entry, exit_, m
        adjacency = sparse.coo_matrix((np.ones(len(entry)), (entry, exit_)), shape=(m, m))
        self.groups, labels = csgraph.connected_components(adjacency, directed=False)
        self.component = labels.astype(np.int64)
        self.sizes = np.bincount(self.component, minlength=self.groups)
        first = np.full(self.groups, m, np.int64)
        np.minimum.at(first, self.component, np.arange(m))
        self.free = np.ones(m, bool)
        self.free[first] = False
        self.keep = np.flatnonzero(self.free)

    def laplacian(self, weight: FloatArray) -> sparse.csc_matrix:
        """A^T W A for the incidence matrix A (+1 at the exit, -1 at the entry of each pair)."""
        e, x, m = self.entry, self.exit, self.m
        rows = np.concatenate([e, x, e, x])
        cols = np.concatenate([e, x, x, e])
        values = np.concatenate([weight, weight, -weight, -weight])
        return sparse.csc_matrix((values, (rows, cols)), shape=(m, m))

    def centre(self, b: FloatArray) -> FloatArray:
        """Shift each group so its biases sum to zero."""
        means = np.bincount(self.component, b, minlength=self.groups) / self.sizes
        return b - means[self.component]


class _Solver:
    """A factorised grounded Laplacian: solves L b = r with each group summing to zero."""

    def __init__(self, net: _Network, weight: FloatArray, exact_max_scales: int) -> None:
        self.net = net
        full = net.laplacian(weight)
        alpha = max(float(full.diagonal().mean()), 1e-12)
        reduced = full[net.keep][:, net.keep]
        # A scale whose pairs all got zero weight would make the system singular; a ridge far
        # below any real information pins it with a huge variance instead.
        reduced = reduced + sparse.identity(len(net.keep), format="csc") * (1e-9 * alpha)
        self.reduced = sparse.csc_matrix(reduced)
        # Trips link random plazas, so the graph is an expander: an LU fills in to nearly
        # dense, while CG with a Jacobi preconditioner converges in a few dozen products.
        # The LU is kept for small networks only: at 1,589 scales one factorisation took
        # 0.13 s, and the robust fit factorises once per reweighting (88 in all).
        self._iterative = net.m > min(exact_max_scales, DIRECT_SOLVE_MAX_SCALES)
        self._lu = splu(self.reduced) if len(net.keep) and not self._iterative else None
        self._jacobi = sparse.diags(1.0 / self.reduced.diagonal())

    def _solve_reduced(self, rhs: FloatArray) -> FloatArray:
        if self._lu is not None:
            return np.asarray(self._lu.solve(np.ascontiguousarray(rhs)), np.float64)
        if rhs.ndim == 2:
            return np.column_stack([self._solve_reduced(col) for col in rhs.T])
        x, _ = cg(self.reduced, rhs, rtol=1e-10, atol=0.0, M=self._jacobi, maxiter=2_000)
        return np.asarray(x, np.float64)

    def solve(self, rhs: FloatArray) -> FloatArray:
        """L⁺ rhs for a rhs (or columns of rhs) summing to zero per group."""
        out = np.zeros(rhs.shape)
        if len(self.net.keep):
            out[self.net.keep] = self._solve_reduced(rhs[self.net.keep])
        if out.ndim == 1:
            return self.net.centre(out)
        return np.column_stack([self.net.centre(col) for col in out.T])

    def variance(self, exact_max_scales: int) -> FloatArray:
        """diag(L⁺): exact for small networks, a fixed-seed Hutchinson estimate above."""
        net = self.net
        if net.m <= exact_max_scales:
            grounded = np.zeros((net.m, net.m))
            if len(net.keep):
                inverse = np.linalg.inv(self.reduced.toarray())
                grounded[np.ix_(net.keep, net.keep)] = inverse
            # L⁺ = Q G Q with G the grounded inverse and Q the per-group centring.
            centred = np.column_stack([net.centre(col) for col in grounded.T])
            return np.diag(np.vstack([net.centre(row) for row in centred])).copy()
        rng = np.random.default_rng(7)
        probes = rng.choice(np.array([-1.0, 1.0]), size=(net.m, VARIANCE_PROBES))
        centred = np.column_stack([net.centre(col) for col in probes.T])
        # E[z ⊙ L⁺z] = diag(L⁺) for Rademacher z; projecting z on the sum-zero space leaves
        # L⁺ z unchanged because L⁺ annihilates each group's constant vector.
        return np.asarray(np.mean(probes * self.solve(centred), axis=1), np.float64)


def _solve(net: _Network, y: FloatArray, weight: FloatArray, exact_max_scales: int) -> FloatArray:
    """Weighted least squares with each group's biases summing to zero."""
    e, x, m = net.entry, net.exit, net.m
    rhs = np.bincount(x, weight * y, minlength=m) - np.bincount(e, weight * y, minlength=m)
    return _Solver(net, weight, exact_max_scales).solve(rhs.astype(np.float64))


def _mad_scale(u: FloatArray) -> float:
    # 1.4826 makes the MAD a consistent sigma for Gaussian noise; the floor keeps an exact
    # fit (all residuals zero) from dividing by zero.
    return max(1.4826 * float(np.median(np.abs(u))), 1e-9)


def _robust_fit(
    entry: IntArray,
    exit_: IntArray,
    y: FloatArray,
    prior: FloatArray,
    m: int,
    cfg: ScaleBiasConfig,
) -> _Fit:
    net = _Network(entry, exit_, m)
    root_prior = np.sqrt(prior)

    def residual(b: FloatArray) -> FloatArray:
        return root_prior * (y - (b[exit_] - b[entry]))

    b = np.zeros(m)
    scale = _mad_scale(residual(b))
    for _ in range(cfg.max_iterations):
        u = residual(b)
        scale = _mad_scale(u)
        huber = np.minimum(1.0, cfg.huber_k / np.maximum(np.abs(u) / scale, 1e-12))
        new = _solve(net, y, prior * huber, cfg.exact_variance_max_scales)
        done = float(np.max(np.abs(new - b))) < cfg.tolerance_step
        b = new
        if done:
            break
    scale = _mad_scale(residual(b))
    for _ in range(cfg.max_iterations):
        x = residual(b) / scale
        tukey = np.clip(1.0 - (x / cfg.tukey_c) ** 2, 0.0, None) ** 2
        new = _solve(net, y, prior * tukey, cfg.exact_variance_max_scales)
        done = float(np.max(np.abs(new - b))) < cfg.tolerance_step
        b = new
        if done:
            break
    variance = _tukey_variance(net, residual(b) / scale, scale, prior, cfg)
    return _Fit(b, variance, net.component)


def _tukey_variance(
    net: _Network, x: FloatArray, scale: float, prior: FloatArray, cfg: ScaleBiasConfig
) -> FloatArray:
    """Diagonal of Huber's (1981) H2 covariance of an M-estimate, with each pair's ψ' as its
    information.

    Using ψ' per pair rather than a global factor means a scale whose pairs were mostly
    rejected as load changes gets the wide interval it deserves.
    """
    n, c = len(x), cfg.tukey_c
    inside = np.abs(x) < c
    t = (x / c) ** 2
    psi = np.where(inside, x * (1.0 - t) ** 2, 0.0)
    # ψ' dips below zero near the rejection point; clipping keeps the information matrix
    # positive semi-definite at the cost of a slightly wider interval.
    dpsi = np.where(inside, np.clip((1.0 - t) * (1.0 - 5.0 * t), 0.0, None), 0.0)
    dof = max(n - (net.m - net.groups), 1)
    mean_dpsi = max(float(dpsi.mean()), 1e-9)
    factor = scale**2 * float(np.sum(psi**2)) / dof / mean_dpsi
    limit = cfg.exact_variance_max_scales
    return factor * _Solver(net, prior * dpsi, limit).variance(limit)


def _anchor_at_median(fit: _Fit, pairs: IntArray, min_pairs: int) -> tuple[FloatArray, FloatArray]:
    """Shift each group so its median well-observed scale has zero bias.

    The variance adds the median's own sampling variance (π/2 · mean variance / n), which is
    small in a network of dozens of scales but not nothing in a small one.
    """
    bias = fit.bias.copy()
    variance = np.clip(fit.variance, 0.0, None).copy()
    for group in np.unique(fit.component):
        members = fit.component == group
        anchors = members & (pairs >= min_pairs)
        if not anchors.any():
            anchors = members
        bias[members] -= float(np.median(fit.bias[anchors]))
        variance[members] += math.pi / 2 * float(variance[anchors].mean()) / int(anchors.sum())
    return bias, variance
