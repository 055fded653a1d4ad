"""The backtest report: one self-contained HTML page with its plots embedded.

Built for the engineer who asks "what happened in this recording, and would the
alerts have helped": an overview of every approach's congestion level over time,
then queue, wait and level of the worst approaches with their alerts marked, the
scale biases against the drift tolerance, and the counts behind it all.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import matplotlib

matplotlib.use("Agg")  # no display: the report is written to a file

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from detectors.alerts import Alert
from detectors.queue import QueueEstimate
from detectors.scales import ScaleBiasEstimate
from tollmon.backtest import BacktestResult

# Times are shown as the operators read them: China Standard Time.
CHINA_TIME = timezone(timedelta(hours=8))
Z_99 = 2.58  # the SCALE_BIAS rule's two-sided 99 % multiplier
LEVEL_COLOURS = ("#2e7d32", "#f9a825", "#ef6c00", "#c62828")
LEVEL_NAMES = ("free", "busy", "congested", "severe")
MAX_APPROACH_PLOTS = 8
# Trip and scale alerts belong to the weighing section, not to an approach's timeline.
APPROACH_KINDS = frozenset({"QUEUE_CONGESTION", "ETC_LANE_DEGRADED", "LANE_STALLED", "DATA_GAP"})

Approach = tuple[str, str]


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=CHINA_TIME)


def _hhmm() -> mdates.DateFormatter:
    return mdates.DateFormatter("%H:%M", tz=CHINA_TIME)  # type: ignore[no-untyped-call]  # matplotlib.dates is unannotated


def _num(ms: int) -> float:
    return float(mdates.date2num(_time(ms)))  # type: ignore[no-untyped-call]  # as above


def by_approach(estimates: Sequence[QueueEstimate]) -> dict[Approach, list[QueueEstimate]]:
    series: dict[Approach, list[QueueEstimate]] = defaultdict(list)
    for e in estimates:
        series[(e.plaza_id, e.direction)].append(e)
    return dict(series)


def approach_alerts(alerts: Sequence[Alert], plaza_id: str, direction: str) -> list[Alert]:
    """The alerts about one approach, one per alert id (the latest state)."""
    latest: dict[str, Alert] = {}
    for a in alerts:
        subject_direction = a.subject.split("/")[1] if "/" in a.subject else None
        if (
            a.kind in APPROACH_KINDS
            and a.plaza_id == plaza_id
            and subject_direction in (None, direction)
        ):
            latest[a.alert_id] = a
    return list(latest.values())


def worst_approaches(result: BacktestResult) -> list[tuple[Approach, dict[str, float]]]:
    """Approaches with their peak numbers, worst first (time congested, then peak queue)."""
    rows: list[tuple[Approach, dict[str, float]]] = []
    for key, series in by_approach(result.estimates).items():
        congested_s = 5.0 * sum(1 for e in series if e.level >= 2)
        rows.append(
            (
                key,
                {
                    "max_queue_veh": max(e.queue_veh for e in series),
                    "max_wait_s": max(e.wait_s for e in series),
                    "max_level": float(max(e.level for e in series)),
                    "congested_min": congested_s / 60,
                    "alerts": float(len(approach_alerts(result.alerts, *key))),
                },
            )
        )
    rows.sort(key=lambda r: (-r[1]["congested_min"], -r[1]["max_queue_veh"], r[0]))
    return rows


def approach_figure(
    series: Sequence[QueueEstimate], alerts: Sequence[Alert], title: str = ""
) -> Figure:
    """Queue, wait and level of one approach over time, alerts shaded or marked."""
    times = [_time(e.ts) for e in series]
    fig, (ax_q, ax_w, ax_l) = plt.subplots(
        3, 1, figsize=(11, 6), sharex=True, height_ratios=(3, 2, 1.2), layout="constrained"
    )
    ax_q.plot(times, [e.queue_veh for e in series], color="#1565c0", lw=1.2, label="queue")
    ax_q.set_ylabel("queue (veh)")
    ax_w.plot(times, [e.wait_s for e in series], color="#6a1b9a", lw=1.2)
    ax_w.set_ylabel("wait (s)")
    levels = [e.level for e in series]
    ax_l.step(times, levels, where="post", color="black", lw=1)
    for level in range(1, 4):
        ax_l.fill_between(
            times,
            0,
            levels,
            where=[lv >= level for lv in levels],
            step="post",
            color=LEVEL_COLOURS[level],
            alpha=0.35,
            lw=0,
        )
    ax_l.set_ylim(-0.2, 3.4)
    ax_l.set_yticks(range(4), LEVEL_NAMES, fontsize=8)
    end = series[-1].ts if series else 0
    for alert in alerts:
        start = _time(alert.started_at)
        if alert.kind == "QUEUE_CONGESTION":
            stop = _time(alert.ended_at if alert.ended_at is not None else end)
            colour = LEVEL_COLOURS[3 if alert.severity == "critical" else 2]
            for ax in (ax_q, ax_w, ax_l):
                ax.axvspan(start, stop, color=colour, alpha=0.12, lw=0)
            ax_q.annotate(
                f"{alert.kind} ({alert.severity})",
                (start, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                va="top",
                color=colour,
            )
        else:
            for ax in (ax_q, ax_w, ax_l):
                ax.axvline(start, color="#455a64", ls="--", lw=0.8)
            ax_q.annotate(
                alert.kind,
                (start, 0.9),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                va="top",
                color="#455a64",
            )
    for ax in (ax_q, ax_w, ax_l):
        ax.grid(alpha=0.3)
    ax_l.xaxis.set_major_formatter(_hhmm())
    ax_l.set_xlabel("time (UTC+8)")
    if title:
        fig.suptitle(title)
    return fig


def overview_figure(result: BacktestResult, order: Sequence[Approach]) -> Figure:
    """Every approach's congestion level over time, one row each, worst on top."""
    series = by_approach(result.estimates)
    start = min(e.ts for e in result.estimates)
    stop = max(e.ts for e in result.estimates)
    columns = (stop - start) // 5000 + 1
    grid = [[0.0] * columns for _ in order]
    for row, key in enumerate(order):
        for e in series[key]:
            grid[row][(e.ts - start) // 5000] = e.level
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(order) + 1.4), layout="constrained")
    cmap = ListedColormap(LEVEL_COLOURS)
    extent = (
        _num(start),
        _num(stop),
        len(order) - 0.5,
        -0.5,
    )
    image = ax.imshow(
        grid,
        aspect="auto",
        cmap=cmap,
        norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], 4),
        extent=extent,
        interpolation="nearest",
    )
    ax.set_yticks(range(len(order)), [f"{p} {d}" for p, d in order], fontsize=8)
    ax.xaxis_date(tz=CHINA_TIME)
    ax.xaxis.set_major_formatter(_hhmm())
    ax.set_xlabel("time (UTC+8)")
    bar = fig.colorbar(image, ax=ax, ticks=range(4), fraction=0.03)
    bar.ax.set_yticklabels(LEVEL_NAMES, fontsize=8)
    return fig


def scale_bias_figure(biases: Sequence[ScaleBiasEstimate], tolerance_ratio: float) -> Figure:
    """Each scale's bias with its 99 % interval against the drift tolerance band."""
    ordered = sorted(biases, key=lambda b: (b.station, b.scale_id))
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(ordered) + 1.2), layout="constrained")
    tol = 100 * tolerance_ratio
    ax.axvspan(-tol, tol, color="#a5d6a7", alpha=0.4, label=f"tolerance ±{tol:.1f} %")
    ax.axvline(0, color="black", lw=0.6)
    for row, b in enumerate(ordered):
        flagged = abs(b.bias_ratio) - Z_99 * b.stderr_ratio > tolerance_ratio
        ax.errorbar(
            100 * b.bias_ratio,
            row,
            xerr=100 * Z_99 * b.stderr_ratio,
            fmt="o",
            color="#c62828" if flagged else "#1565c0",
            capsize=3,
            ms=4,
        )
    ax.set_yticks(
        range(len(ordered)), [f"{b.scale_id} ({b.pairs} pairs)" for b in ordered], fontsize=8
    )
    ax.invert_yaxis()
    ax.set_xlabel(f"bias (% of gross), ±{Z_99}·SE")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def png_data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


WORST_HEADERS = (
    "plaza",
    "direction",
    "minutes congested",
    "max queue (veh)",
    "max wait (s)",
    "max level",
    "alerts",
)
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;
padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}
img{max-width:100%}.grid{display:flex;gap:2em;flex-wrap:wrap}
"""


def render_report(result: BacktestResult, title: str, tolerance_ratio: float) -> str:
    """The report as one HTML document."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts += [f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>"]
    parts.append(_summary(result))
    worst = worst_approaches(result)
    if worst:
        parts.append("<h2>Congestion level, every approach</h2>")
        order = [key for key, _ in worst]
        parts.append(f"<img src='{png_data_uri(overview_figure(result, order))}'>")
        series = by_approach(result.estimates)
        shown = [key for key, s in worst if s["max_level"] >= 1 or s["alerts"]]
        for plaza_id, direction in shown[:MAX_APPROACH_PLOTS]:
            fig = approach_figure(
                series[(plaza_id, direction)],
                approach_alerts(result.alerts, plaza_id, direction),
                f"{plaza_id} {direction}: queue, wait and congestion level",
            )
            parts.append(f"<h3>{html.escape(plaza_id)} {direction}</h3>")
            parts.append(f"<img src='{png_data_uri(fig)}'>")
        if len(shown) > MAX_APPROACH_PLOTS:
            parts.append(f"<p>{len(shown) - MAX_APPROACH_PLOTS} more busy approaches: see table.")
    if result.scale_biases:
        parts.append("<h2>Scale bias</h2>")
        figure = scale_bias_figure(result.scale_biases, tolerance_ratio)
        parts.append(f"<img src='{png_data_uri(figure)}'>")
    parts.append(_alert_list(result.alerts))
    return "\n".join(parts)


def _summary(result: BacktestResult) -> str:
    alerts_by_kind: Counter[tuple[str, str]] = Counter(
        (a.kind, a.severity) for a in result.alerts if a.status == "firing"
    )
    worst = worst_approaches(result)
    blocks = [
        "<h2>Summary</h2><div class='grid'><div><h3>Events by type</h3>",
        _table(["type", "events"], sorted(result.events_by_type.items())),
        "</div><div><h3>Invalid lines by reason</h3>",
        _table(["reason", "lines"], sorted(result.invalid_by_reason.items()) or [["none", 0]]),
        "</div><div><h3>Alerts raised by kind</h3>",
        _table(
            ["kind", "severity", "alerts"],
            [(k, s, n) for (k, s), n in sorted(alerts_by_kind.items())] or [["none", "", 0]],
        ),
        "</div></div><h3>Worst approaches</h3>",
        _table(
            WORST_HEADERS,
            [
                (
                    p,
                    d,
                    s["congested_min"],
                    s["max_queue_veh"],
                    s["max_wait_s"],
                    int(s["max_level"]),
                    int(s["alerts"]),
                )
                for (p, d), s in worst[:15]
            ],
        ),
    ]
    if result.late_events:
        blocks.append(f"<p>{result.late_events} events arrived after their time was released.")
    return "".join(blocks)


def _alert_list(alerts: Sequence[Alert]) -> str:
    latest: dict[str, Alert] = {}
    for a in alerts:
        latest[a.alert_id] = a
    rows = [
        (
            _time(a.started_at).strftime("%m-%d %H:%M:%S"),
            a.kind,
            a.severity,
            a.status,
            a.subject,
            a.summary_en,
        )
        for a in sorted(latest.values(), key=lambda a: a.started_at)
    ]
    return "<h2>Alerts</h2>" + _table(
        ["started (UTC+8)", "kind", "severity", "last status", "subject", "summary"], rows
    )
