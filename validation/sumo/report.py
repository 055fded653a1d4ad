"""The markdown report and its plots (docs/validation/sumo.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from validation.sumo.evaluate import Evaluation, VariantResult
from validation.sumo.replay import sim_seconds
from validation.sumo.scenario import STANDARD_LAYOUT, VEHICLE_TYPES, Scenario
from validation.sumo.score import Scores, Targets


def _s(value: float | None, unit: str = " s") -> str:
    return "—" if value is None else f"{value:.0f}{unit}"


def _score_row(name: str, s: Scores, targets: Targets) -> str:
    ok = "yes" if s.meets(targets) else "**no**"
    return (
        f"| {name} | {s.queue_mae_veh:.2f} | {s.wait_mae_s:.1f} | {s.queue_bias_veh:+.2f} |"
        f" {s.queue_mae_congested_veh:.1f} | {s.max_true_queue_veh:.0f} /"
        f" {s.max_estimated_queue_veh:.0f} | {_s(s.true_onset_s)} |"
        f" {_s(s.true_sustained_onset_s)} | {_s(s.alert_started_s)} |"
        f" {_s(s.onset_delay_s)} / {_s(s.onset_delay_held_s)} |"
        f" {_s(s.onset_delay_spillback_s)} | {s.alerts} |"
        f" {s.false_alerts + s.free_flow_alerts} |"
        f" {s.spillback_outputs} | {ok} |"
    )


_HEADER = (
    "| variant | queue MAE (veh) | wait MAE (s) | queue bias (veh) | queue MAE while"
    " congested (veh) | max queue true / est. | true onset | true onset held 60 s |"
    " alert started_at | onset delay (first touch / held) | onset delay, spillback in the"
    " true level (held) | alerts | false alerts | spillback outputs | meets §7 |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _scenario_lines(scenario: Scenario) -> list[str]:
    phases = ", ".join(
        f"{p.name} {p.duration_s / 60:.0f} min at {p.veh_per_h:.0f} veh/h" for p in scenario.phases
    )
    return [f"- demand (Poisson): {phases}; seed {scenario.seed}"]


def _variant_table(results: Sequence[VariantResult], targets: Targets, detector: bool) -> str:
    rows = [
        _score_row(r.variant.name, r.scores_detector_timed if detector else r.scores, targets)
        for r in results
    ]
    return "\n".join([_HEADER, *rows])


def _hidden_table(results: Sequence[VariantResult]) -> str:
    rows = [
        "| variant | outputs, none hidden | queue MAE there (veh) | outputs, some hidden |"
        " queue MAE there (veh) | mean vehicles hidden upstream |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        h = r.hidden
        rows.append(
            f"| {r.variant.name} | {h.visible_outputs} | {h.visible_mae_veh:.2f} |"
            f" {h.hidden_outputs} | {h.hidden_mae_veh:.2f} | {h.mean_hidden_veh:.1f} |"
        )
    return "\n".join(rows)


def plot(evaluation: Evaluation, path: Path) -> None:
    """Estimated vs true queue and wait over time, with alert markers and demand phases."""
    import matplotlib

    # No display on CI or servers: render straight to a file.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9.0, 5.6), sharex=True, dpi=80)
    main = evaluation.result("input_output")
    headway = evaluation.result("headway")
    t_s = np.array([sim_seconds(e.ts) for e in main.run.estimates])
    t_min = t_s / 60.0
    truth_q = evaluation.truth.queue_veh(t_s)
    truth_w = evaluation.truth.wait_s(t_s)
    det_q = evaluation.truth_detector_timed.queue_veh(t_s)
    det_w = evaluation.truth_detector_timed.wait_s(t_s)
    h_t = np.array([sim_seconds(e.ts) for e in headway.run.estimates]) / 60.0
    series = (
        (axes[0], truth_q, det_q, [e.queue_veh for e in main.run.estimates],
         [e.queue_veh for e in headway.run.estimates], "queue_veh"),
        (axes[1], truth_w, det_w, [e.wait_s for e in main.run.estimates],
         [e.wait_s for e in headway.run.estimates], "wait_s"),
    )  # fmt: skip
    for ax, truth, det, est, hw, label in series:
        ax.plot(t_min, truth, color="black", lw=1.4, label="truth (SPEC §4.1)")
        ax.plot(t_min, det, color="0.55", lw=1.0, ls="--", label="truth timed at detector")
        ax.plot(t_min, est, color="tab:blue", lw=1.1, label="estimate (input-output)")
        ax.plot(h_t, hw, color="tab:orange", lw=0.9, alpha=0.8, label="estimate (headway)")
        ax.set_ylabel(label)
        for phase, start, end in evaluation.scenario.phase_spans():
            if phase.name == "surge":
                ax.axvspan(start / 60.0, end / 60.0, color="tab:red", alpha=0.06)
    s = main.scores
    for ax in axes:
        if s.true_onset_s is not None:
            ax.axvline(s.true_onset_s / 60.0, color="black", ls=":", lw=1.0)
        for alert in main.run.alerts:
            if alert.status == "firing":
                ax.axvline(sim_seconds(alert.started_at) / 60.0, color="tab:red", ls="--", lw=0.9)
                raised = alert.evidence.get("ts")
                if isinstance(raised, int):
                    ax.axvline(sim_seconds(raised) / 60.0, color="tab:red", lw=0.9)
            elif alert.ended_at is not None:
                ax.axvline(sim_seconds(alert.ended_at) / 60.0, color="tab:green", lw=0.9)
    axes[0].legend(loc="upper right", fontsize=7, ncol=2)
    axes[1].set_xlabel(
        "minutes (shaded: surge; dotted: true onset; red dashed/solid: alert started_at/raised;"
        " green: resolved)",
        fontsize=7,
    )
    axes[0].set_title(f"SUMO toll plaza, scenario {evaluation.scenario.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_report(
    evaluations: Sequence[Evaluation],
    seeds: Sequence[Evaluation],
    out: Path,
    targets: Targets,
) -> Path:
    """Write sumo.md and one plot per scenario into `out`; return the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    layout = STANDARD_LAYOUT  # the report's scenarios share it
    if any(e.scenario.layout != layout for e in (*evaluations, *seeds)):
        raise ValueError("this report describes the standard layout only")
    lines = [
        "# Queue estimator vs. Eclipse SUMO (SPEC §4.1, §7)",
        "",
        "Generated by `python -m validation.sumo.run`; do not edit by hand.",
        "",
        "## Set-up",
        "",
        f"- plaza: a {layout.approach_lanes}-lane approach fans out into {len(layout.booths)}"
        " toll lanes, each 80 m from the"
        " fan-out to its barrier: "
        + ", ".join(
            f"{b.lane_id} {b.kind}"
            + (f" (ETC failure {b.etc_failure_ratio:.0%})" if b.kind == "ETC" else "")
            for b in layout.booths
        )
        + "; each approach lane feeds two booths (MTC on the right, ETC on the left)",
        f"- approach detector D1: loops across the approach {layout.detector_distance_m:.0f} m"
        " upstream of the barriers, ANPR plate hashes on 90 % of detections; configured with"
        f" `approach_lanes: {layout.approach_lanes}` (the `open_lanes` variant leaves it unset)",
        f"- loop D2, {layout.upstream_detector_m:.0f} m upstream of the barriers (500 m beyond"
        " D1, past the longest queue): counts only, no plates; configured (with its surveyed"
        " free-flow time) and fed only in the `upstream_loop` variants",
        "- vehicles: "
        + ", ".join(
            f"{v.vehicle_class} {v.share:.0%} ({v.length_m:.0f} m + {v.min_gap_m:.1f} m gap,"
            f" ETC {v.etc_share:.0%})"
            for v in VEHICLE_TYPES
        )
        + "; each joins the shortest queue of its payment type",
        "- service at the barrier (a SUMO stop, gamma distributed): ETC ≈ 3 s, manual ≈ 14 s,"
        " failed ETC handled by hand ≈ 25 s (reported as `result=ETC_FAIL`)",
        "- SUMO 0.25 s steps, fixed seeds, no speed spread or dawdling; events are the"
        " contract's `approach_detection` and `lane_transaction` (with `service_ms`), replayed in"
        " event-time order through `ApproachEstimator` with `advance()` after every event",
        "- truth (SPEC §4.1): a vehicle's free-flow arrival at the barrier is its crossing of a"
        " cross-section 1.8 km upstream (beyond any queue) plus the calibrated free-flow time"
        " from there (each vehicle type alone through each booth); its service start is when it"
        " stopped at the barrier. queue = due but not started; wait = mean delay of the"
        " vehicles that left in the last 30 s. The *detector-timed* truth starts the clock at"
        " D1 instead; it equals the SPEC truth until the queue spills back past D1",
        "- onset: the first second the true level (5 per open lane, or 120 s wait) reaches 2;"
        " delay = the alert's `started_at` minus that, and minus the held onset (the first"
        " true run at level ≥ 2 lasting the 60 s raise hold: where the §4.1 rule fed the truth"
        " would start the alert); the 30 s bar is checked on the held onset. False alerts:"
        " alert episodes that overlap no true congestion, plus any started during the first"
        " free-flow phase",
        "",
    ]
    for ev in evaluations:
        image = f"sumo_{ev.scenario.name}.png"
        plot(ev, out / image)
        sim = ev.simulation
        lines += [
            f"## Scenario `{ev.scenario.name}`",
            "",
            *_scenario_lines(ev.scenario),
            f"- {len(sim.records)} of {sim.generated} vehicles served, {sim.teleports} teleports,"
            f" last departure at {sim.end_s / 60:.1f} min; free-flow τ detector→barrier"
            f" {ev.free_flow.detector_mean_s():.2f} s (configured as `free_flow_s`)",
            "",
            "Against the SPEC §4.1 truth:",
            "",
            _variant_table(ev.results, targets, detector=False),
            "",
            "Against the detector-timed truth (what the detector can see):",
            "",
            _variant_table(ev.results, targets, detector=True),
            "",
            "Where the queue error is (SPEC truth): outputs at which every queued vehicle has"
            " crossed the detector, and outputs at which some still queue upstream of it:",
            "",
            _hidden_table(ev.results),
            "",
            f"![estimated vs true queue and wait]({image})",
            "",
        ]
    if seeds:
        lines += [
            "## Other seeds (scenario `full`, variant `input_output`, SPEC truth)",
            "",
            "| seed | queue MAE (veh) | wait MAE (s) | max true queue | true onset | onset held"
            " 60 s | alert started_at | onset delay (first touch / held) | false alerts |"
            " queue MAE, detector-timed truth | queue MAE, none hidden / some hidden |"
            " `upstream_loop`: queue MAE, wait MAE, onset delay (held; with spillback in the"
            " true level) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for ev in seeds:
            s = ev.result("input_output").scores
            d = ev.result("input_output").scores_detector_timed
            h = ev.result("input_output").hidden
            u = ev.result("upstream_loop").scores
            lines.append(
                f"| {ev.scenario.seed} | {s.queue_mae_veh:.2f} | {s.wait_mae_s:.1f} |"
                f" {s.max_true_queue_veh:.0f} | {_s(s.true_onset_s)} |"
                f" {_s(s.true_sustained_onset_s)} | {_s(s.alert_started_s)} |"
                f" {_s(s.onset_delay_s)} / {_s(s.onset_delay_held_s)} |"
                f" {s.false_alerts + s.free_flow_alerts} | {d.queue_mae_veh:.2f} |"
                f" {h.visible_mae_veh:.2f} / {h.hidden_mae_veh:.2f} |"
                f" {u.queue_mae_veh:.2f} veh, {u.wait_mae_s:.1f} s, {_s(u.onset_delay_held_s)};"
                f" {_s(u.onset_delay_spillback_s)} |"
            )
        lines.append("")
    lines += _before_after(list(evaluations) + list(seeds))
    lines += _FINDINGS
    path = out / "sumo.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# Measured at main ef04d28, before the spillback and headway changes of issue #3, with this
# same harness: (scenario, seed, variant) → (queue MAE veh, wait MAE s, onset delay s or None).
_BEFORE: dict[tuple[str, int, str], tuple[float, float, float | None]] = {
    ("short", 7, "input_output"): (3.35, 4.7, 28.0),
    ("short", 7, "no_plates"): (3.41, 6.4, 28.0),
    ("short", 7, "headway"): (16.99, 34.2, None),
    ("full", 3, "input_output"): (5.95, 13.6, 0.0),
    ("full", 3, "no_plates"): (6.69, 16.1, 0.0),
    ("full", 3, "headway"): (14.28, 32.9, None),
    ("full", 11, "input_output"): (2.66, 5.0, 438.0),
    ("full", 11, "no_plates"): (3.10, 7.8, 438.0),
    ("full", 11, "headway"): (9.96, 22.6, None),
    ("full", 19, "input_output"): (2.10, 5.0, 20.0),
    ("full", 19, "no_plates"): (4.35, 9.4, 20.0),
    ("full", 19, "headway"): (13.38, 27.0, None),
    ("full", 23, "input_output"): (10.71, 23.0, 65.0),
    ("full", 23, "no_plates"): (12.01, 26.9, 65.0),
    ("full", 23, "headway"): (22.32, 49.4, None),
}


def _before_after(evaluations: Sequence[Evaluation]) -> list[str]:
    lines = [
        "## Before and after issue #3 (SPEC truth; onset delay from the first touch)",
        "",
        "| scenario | seed | variant | queue MAE before → now (veh) | wait MAE before → now"
        " (s) | onset delay before → now |",
        "|---|---|---|---|---|---|",
    ]
    for ev in evaluations:
        for r in ev.results:
            before = _BEFORE.get((ev.scenario.name, ev.scenario.seed, r.variant.name))
            if before is None:
                continue
            s = r.scores
            lines.append(
                f"| {ev.scenario.name} | {ev.scenario.seed} | {r.variant.name} |"
                f" {before[0]:.2f} → {s.queue_mae_veh:.2f} | {before[1]:.1f} → {s.wait_mae_s:.1f} |"
                f" {_s(before[2])} → {_s(s.onset_delay_s)} |"
            )
    lines.append("")
    return lines


_FINDINGS: list[str] = [
    "## What limits the estimate",
    "",
    "- **Who is in service.** A vehicle is queued until its service starts, so the count of"
    " vehicles due at the barriers must lose exactly those being served. One per open lane"
    " was too many: behind a manual barrier the next vehicle needs about 3.5 s to pull up"
    " after the previous one left (due, not served), and ETC lanes beside a manual queue are"
    " mostly empty; the visible queue ran 2-2.5 vehicles low at moderate congestion. Lanes of"
    " one payment type are a pool: once one of them serves vehicles that waited (their delay,"
    " from plates or the order of detections, and service right after the previous"
    " departure), each of its lanes counts a vehicle in service except within the type's"
    " move-up after its last departure, and a type without a queue counts its measured"
    " utilisation. The rest of the visible error is the instant state behind an average:"
    " which ETC lane is busy at a given second, and vehicles slowed on the approach before"
    " any lane shows a queue.",
    "- **Spillback hides the queue.** Between the detector and the barriers only about 40-55"
    " vehicles fit in practice: the manual queue stands in its share of the 3 approach lanes"
    " (the network's `approach_lanes`) and reaches the detector first. The estimator measures"
    " the queue's length on the lane type that carries most of the delay (Little's law on the"
    " last 30 s of departures), so the spillback flag fires at about the right count. Beyond"
    " the detector nothing is counted: inside a queue the detector passes what the barriers"
    " discharge, whatever stands behind it, so the length beyond it is not observable from"
    " counts or plates. The estimator extrapolates: the demand it measured before the"
    " spillback, less what the detector now passes, piles up behind it while the surge lasts;"
    " how long it lasts is unknown, so the surge's age R (the time the measured excess of"
    " demand over discharge needs to fill the detector's stretch) gives it a chance R/(R+t) to"
    " go on after a further t. The hidden part is kept until the detector counts clearly"
    " less than the departures (the tail going by) and then drained at the discharge rate;"
    " alerts carry it as `hidden_queue_veh`. This tracks a surge that ends within about R of"
    " the spillback; a longer one (seeds 3 and 23) is still under-estimated, and the hidden"
    " part lingers after a surge that ended unseen.",
    "- **A second loop upstream counts it** (the `upstream_loop` variants). With D2 configured,"
    " D1 still counts (plates, corrections) and D2 measures what stands behind it: at free"
    " flow both count the same vehicles, A_D2(t − τ_D2) = A_D1(t − τ_D1), so their"
    " difference is the vehicles due at the barriers that have not crossed D1 yet. The two"
    " counters are calibrated against each other (median difference over the last 2 min in"
    " which D1's queue was under half its stretch), the spillback flag rises once 3 vehicles"
    " stand behind D1 with at least half the stretch in front of it counted, and each"
    " departing vehicle's wait gains the time it stood behind D1 (from when it was due there,"
    " by D2's count, to its D1 crossing). A 250 m gap was too short on the full run: the"
    " queue passed D2 too and was extrapolated beyond it, as behind a lone detector (queue"
    " MAE 1.48 veh); D2 must stand beyond the longest queue. A D2 that misses or doubles 3 %"
    " of vehicles (`upstream_loop_missed`, `upstream_loop_double_counts`) drifts while the"
    " spillback lasts, when nothing can calibrate it: the queue behind D1 is off by up to the"
    " drift, 1.6-2.7 veh MAE over the runs above (still below D1 alone), and a doubling D2"
    " starts the spillback early. The counts are re-anchored when D1 sees the tail go by"
    " (it passes clearly fewer vehicles than the barriers serve), so no drift outlasts the"
    " congestion. Without D2's free-flow time configured (`upstream_loop_learned_tau`), the"
    " lag across the 500 m is learned: from vehicles alone on the stretch, and in busy clear"
    " periods as the lag that keeps the difference of the counts flattest over 4 min. The"
    " prior (the approach speed, 8 m/s: 62 s where SUMO's vehicles take 30 s) had given"
    " 2.36 and 1.68 veh on the short and full runs; learned, 0.41 and 0.53, as surveyed.",
    "- **Plate matches floor the count.** Departures are not first-in-first-out across ETC and"
    " manual lanes, so plates are not used to shift the count by ranks; the plated vehicles"
    " due and not yet served are a lower bound for it (a detector that misses vehicles), and"
    " an unplated detection older than three times the longest plate-matched delay of the"
    " last five minutes is dropped as a phantom. Lanes silent for two of their service times"
    " while vehicles outnumber the open lanes count as idle, not serving (ETC lanes idling"
    " beside a manual queue).",
    "- **A detector that miscounts** (the `double_counts` and `missed_no_plates` variants)."
    " A missed vehicle makes the count low until the queue empties (departures then outrun"
    " the count, which is re-anchored at once) or, with plates, until a plated vehicle is"
    " due and unserved. A double count makes it high, and an approach that never goes quiet"
    " for a minute never re-anchors on silence. Two more checks forget unplated phantoms:"
    " more unplated vehicles waiting than the plate reader's unread share allows (three"
    " standard deviations of the negative binomial given the plated ones), and a moment when"
    " every lane in use was seen free between two of its departures (nobody waited then, so"
    " any vehicle counted as due and not served was a phantom; a lane silent since its last"
    " departure may be stalled and is not taken as free). Without plates the second is the"
    " only check, and lanes are never all free while a queue stands: phantoms counted during"
    " congestion stay until the first free moment after it.",
    "- **The onset.** The true level touches 2 when the true queue first reaches 30; a true"
    " episode that flickers around the threshold (seed 11: first touch at 2132 s, first run"
    " held 60 s at 2552 s) is no congestion the §4.1 rule alerts on even when fed the truth,"
    " so the 30 s bar is checked against the held onset; both delays are shown. SPEC §4.1"
    " also puts spillback at level 3; the truth has no queue position, so the column"
    " 'spillback in the true level' counts it from the first vehicle delayed before reaching"
    " the detector, held 60 s. The estimator flags spillback once its count reaches the"
    " stretch's estimated capacity, which the fan-out into booth lanes makes uncertain: on"
    " the 120 m detector of the sweep the estimate was 26-32 vehicles where the queue"
    " reached the detector at 22-23, so there the alert comes 37-65 s after that onset.",
    "- **The headway method** (no detector) sees only the lanes' utilisation over the last"
    " 2 min. A departure that follows the previous one within its service time plus a"
    " 5 s move-up was queued, so the whole headway counts as busy (SUMO's move-up of ≈ 3.5 s"
    " is not in `service_ms`); saturated lanes then reach the 0.95 utilisation cap and M/G/1"
    " gives about 10 vehicles per lane, which raises the congestion alert. The queue itself"
    " is not observable from departures once lanes saturate (the M/G/1 number is a steady"
    " state, not the surge's backlog), and the alert can start up to a minute before or after"
    " the true onset. Two minutes of departures are a noisy utilisation: near the cap, lanes"
    " with ETC failures (service SCV above 1) make M/G/1 jump, and in free flow the estimate"
    " spikes to 20-40 vehicles for a few outputs (seed 23: 42 against a true 9, level 2 for"
    " 15 s; the 60 s hold kept every run free of false alerts, with little margin). Capping"
    " each lane's M/G/1 queue by its run of queued departures removed the spikes but also"
    " every surge alert, so it is not used. The headway method is reported for information;"
    " the §7 bars are for approaches with a detector.",
    "- **Truth.** Vehicles have no speed spread or dawdling, so each vehicle type's free-flow"
    " trip is one calibrated number per booth; lane choice is a pre-trip shortest-queue"
    " shadow, not SUMO's own routing. SUMO's move-up after each departure (≈ 3.5 s) is part"
    " of the lane's capacity but not of `service_ms`.",
]
