"""Generate the Grafana dashboards in dashboards/json/ from the §5 metrics.

Run `python dashboards/generate.py` after editing; a unit test fails while the
committed JSON differs from what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

JSON_DIR = Path(__file__).resolve().parent / "json"
DATASOURCE = {"type": "prometheus", "uid": "tollmon-prometheus"}
FOLDER_UID = "tollmon"
APPROACH = 'plaza="$plaza",direction="$direction"'
# Pair outcomes and alert counts are rare per plaza: a long window gives a stable ratio.
SLOW_WINDOW = "30m"

Json = dict[str, Any]

# §4.1 congestion levels 0-3, coloured the way dispatchers read traffic maps.
LEVEL_STEPS = [
    {"color": "green", "value": None},
    {"color": "yellow", "value": 1},
    {"color": "orange", "value": 2},
    {"color": "red", "value": 3},
]


def target(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> Json:
    out: Json = {"datasource": DATASOURCE, "expr": expr, "refId": ref, "legendFormat": legend}
    if instant:
        out |= {"instant": True, "range": False, "format": "table"}
    return out


class Layout:
    """Panels placed left to right in rows of 24 grid units, with unique ids."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._x = self._y = self._row_h = 0

    def add(self, panel: Json, w: int = 12, h: int = 8) -> None:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        panel = {
            "id": len(self.panels) + 1,
            "datasource": DATASOURCE,
            "gridPos": {"x": self._x, "y": self._y, "w": w, "h": h},
            **panel,
        }
        self.panels.append(panel)
        self._x += w
        self._row_h = max(self._row_h, h)


def timeseries(title: str, targets: list[Json], unit: str = "short", **options: Any) -> Json:
    return {
        "type": "timeseries",
        "title": title,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, **options}, "overrides": []},
    }


def stat(title: str, expr: str, unit: str = "short", steps: list[Json] | None = None) -> Json:
    thresholds = {"mode": "absolute", "steps": steps or [{"color": "green", "value": None}]}
    return {
        "type": "stat",
        "title": title,
        "targets": [target(expr)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": thresholds}, "overrides": []},
        "options": {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
    }


def table(title: str, targets: list[Json], transformations: list[Json] | None = None) -> Json:
    return {
        "type": "table",
        "title": title,
        "targets": targets,
        "transformations": transformations
        or [{"id": "merge", "options": {}}, {"id": "organize", "options": _hide_meta()}],
    }


def _hide_meta() -> Json:
    return {"excludeByName": {"Time": True, "job": True, "instance": True, "env": True}}


def alerts_table(title: str, selector: str) -> Json:
    matchers = f"{{{selector}}}" if selector else ""
    expr = f"sum by (kind, severity, plaza) (tollmon_alerts_firing{matchers}) > 0"
    return table(title, [target(expr, instant=True)])


def dashboard(uid: str, title: str, layout: Layout, variables: list[Json] | None = None) -> Json:
    return {
        "uid": uid,
        "title": title,
        "tags": ["tollmon"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["tollmon"], "asDropdown": True, "title": "tollmon"}
        ],
        "panels": layout.panels,
    }


def query_variable(name: str, label: str, query: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
    }


def network_overview() -> Json:
    layout = Layout()
    # Plazas without queue data yet still appear on the map, at level 0.
    level_by_plaza = (
        "max by (plaza, name, road, lat, lon) ("
        "(tollmon_plaza_info * on (plaza) group_left () max by (plaza) (tollmon_congestion_level))"
        " or (tollmon_plaza_info * 0))"
    )
    layout.add(
        {
            "type": "geomap",
            "title": "Plazas by congestion level",
            "targets": [target(level_by_plaza, instant=True)],
            "transformations": [
                {
                    "id": "convertFieldType",
                    "options": {
                        "conversions": [
                            {"targetField": "lat", "destinationType": "number"},
                            {"targetField": "lon", "destinationType": "number"},
                        ]
                    },
                }
            ],
            "fieldConfig": {
                "defaults": {
                    "min": 0,
                    "max": 3,
                    "color": {"mode": "thresholds"},
                    "thresholds": {"mode": "absolute", "steps": LEVEL_STEPS},
                },
                "overrides": [],
            },
            "options": {
                "view": {"id": "coords", "lat": 43.8, "lon": 87.6, "zoom": 8},
                "controls": {"showZoom": True, "mouseWheelZoom": True},
                "basemap": {"type": "default", "name": "Basemap"},
                "layers": [
                    {
                        "type": "markers",
                        "name": "Plazas",
                        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"},
                        "config": {
                            "size": {"fixed": 9},
                            "color": {"field": "Value", "fixed": "green"},
                            "text": {"field": "plaza", "mode": "field"},
                            "showLegend": True,
                        },
                        "tooltip": True,
                    }
                ],
            },
        },
        w=14,
        h=16,
    )
    layout.add(
        stat(
            "Plazas congested now (level ≥ 2)",
            "count(max by (plaza) (tollmon_congestion_level) >= 2) or vector(0)",
            steps=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
        ),
        w=5,
        h=4,
    )
    layout.add(
        stat("Alerts firing", "sum(tollmon_alerts_firing) or vector(0)"),
        w=5,
        h=4,
    )
    spilled = stat(
        "Approaches queued past their detector",
        "count(tollmon_spillback == 1) or vector(0)",
        steps=[{"color": "green", "value": None}, {"color": "red", "value": 1}],
    )
    spilled["description"] = (
        "Approaches whose queue reaches back past the approach detector (spillback): the"
        " queue is longer than the detector can count, and may reach the main carriageway."
    )
    layout.add(spilled, w=10, h=4)
    layout.add(
        table(
            "Worst approaches now",
            [
                target(
                    "topk(10, max by (plaza, direction) (tollmon_queue_vehicles))",
                    instant=True,
                    ref="A",
                ),
                target(
                    "max by (plaza, direction) (tollmon_wait_seconds)"
                    " and on (plaza, direction)"
                    " topk(10, max by (plaza, direction) (tollmon_queue_vehicles))",
                    instant=True,
                    ref="B",
                ),
            ],
        ),
        w=10,
        h=12,
    )
    layout.add(alerts_table("Active alerts", ""), w=12, h=8)
    layout.add(
        timeseries(
            "Network throughput",
            [
                target(
                    "sum by (direction) (rate(tollmon_lane_transactions_total[$__rate_interval]))"
                    " * 60",
                    "departures {{direction}}",
                ),
                target(
                    "sum by (direction) (rate(tollmon_arrivals_total[$__rate_interval])) * 60",
                    "arrivals {{direction}}",
                    ref="B",
                ),
            ],
            unit="veh/min",
        ),
        w=12,
        h=8,
    )
    return dashboard("tollmon-network", "tollmon / Network overview", layout)


def plaza_detail() -> Json:
    layout = Layout()
    for title, metric, unit in (
        ("Queue (vehicles)", "tollmon_queue_vehicles", "short"),
        ("Queue length", "tollmon_queue_meters", "lengthm"),
        ("Mean wait", "tollmon_wait_seconds", "s"),
    ):
        layout.add(timeseries(title, [target(f"max({metric}{{{APPROACH}}})", title)], unit), w=8)
    layout.add(
        timeseries(
            "Arrivals vs departures",
            [
                target(
                    f"sum(rate(tollmon_arrivals_total{{{APPROACH}}}[$__rate_interval])) * 60",
                    "arrivals",
                ),
                target(
                    f"sum(rate(tollmon_lane_transactions_total{{{APPROACH}}}[$__rate_interval]))"
                    " * 60",
                    "departures",
                    ref="B",
                ),
            ],
            unit="veh/min",
        ),
        w=12,
    )
    layout.add(
        timeseries(
            "Congestion level, open lanes and spillback",
            [
                target(f"max(tollmon_congestion_level{{{APPROACH}}})", "level"),
                target(f"max(tollmon_open_lanes{{{APPROACH}}})", "open lanes", ref="B"),
                target(
                    f"max(tollmon_spillback{{{APPROACH}}})",
                    "queue past the detector (1 = yes)",
                    ref="C",
                ),
            ],
            decimals=0,
        ),
        w=12,
    )
    layout.add(
        timeseries(
            "Throughput per lane",
            [
                target(
                    "sum by (lane) (rate(tollmon_lane_transactions_total"
                    f"{{{APPROACH}}}[$__rate_interval])) * 60",
                    "lane {{lane}}",
                )
            ],
            unit="veh/min",
        ),
        w=12,
    )
    layout.add(
        timeseries(
            "ETC failure ratio per lane",
            [
                target(
                    f"max by (lane) (tollmon_etc_failure_ratio{{{APPROACH}}})",
                    "lane {{lane}}",
                )
            ],
            unit="percentunit",
        ),
        w=12,
    )
    corrections = timeseries(
        "Detector count corrections (last hour)",
        [
            target(
                f"sum by (kind) (increase(tollmon_queue_corrections_total{{{APPROACH}}}[1h]))",
                "{{kind}}",
            )
        ],
        unit="none",
    )
    corrections["description"] = (
        "Vehicles the queue estimator put back into the approach detector's count (missed)"
        " or forgot from it (phantom: counted, never there). More than a few an hour: the"
        " detector's counts are off, and the queue is only as good as its corrections."
    )
    layout.add(corrections, w=12)
    layout.add(alerts_table("Alerts at this plaza", 'plaza="$plaza"'), w=24, h=6)
    variables = [
        query_variable("plaza", "Plaza", "label_values(tollmon_plaza_info, plaza)"),
        query_variable(
            "direction",
            "Direction",
            'label_values(tollmon_queue_vehicles{plaza="$plaza"}, direction)',
        ),
    ]
    return dashboard("tollmon-plaza", "tollmon / Plaza detail", layout, variables)


def weighing() -> Json:
    layout = Layout()
    bias = "max by (scale, plaza, station) (tollmon_scale_bias_ratio)"
    stderr = "max by (scale, plaza, station) (tollmon_scale_bias_stderr_ratio)"
    # 2.58 standard errors: the 99 % interval SPEC §4.3 tests SCALE_BIAS against.
    layout.add(
        table(
            "Scale biases with 99 % intervals",
            [
                target(bias, instant=True, ref="A"),
                target(f"{bias} - 2.58 * {stderr}", instant=True, ref="B"),
                target(f"{bias} + 2.58 * {stderr}", instant=True, ref="C"),
            ],
        ),
        w=12,
        h=10,
    )
    layout.add(
        timeseries(
            "Scale bias over time",
            [target(bias, "{{scale}} ({{station}})")],
            unit="percentunit",
        ),
        w=12,
        h=10,
    )

    def pairs(matcher: str) -> str:
        return (
            "sum by (exit_plaza) (increase(tollmon_weight_pairs_total"
            f"{{{matcher}}}[{SLOW_WINDOW}]))"
        )

    discrepant = pairs('outcome="discrepant"')
    paired = pairs('outcome=~"matched|discrepant"')

    layout.add(
        timeseries(
            "Discrepancy rate by exit plaza",
            [
                target(
                    f"{discrepant} / {paired}",
                    "{{exit_plaza}}",
                )
            ],
            unit="percentunit",
        ),
        w=12,
    )
    layout.add(
        timeseries(
            "Entry overloads by plaza",
            [
                target(
                    "sum by (plaza) (increase(tollmon_lane_transactions_total"
                    f'{{direction="entry",result="REJECTED"}}[{SLOW_WINDOW}]))',
                    "{{plaza}} refused",
                ),
                target(
                    f"sum by (plaza) (increase(tollmon_overloads_admitted_total[{SLOW_WINDOW}]))",
                    "{{plaza}} admitted",
                    ref="B",
                ),
            ],
        ),
        w=12,
    )
    layout.add(
        timeseries(
            "Unmatched trips (entry without exit within the horizon)",
            [
                target(
                    "sum(increase(tollmon_weight_pairs_total"
                    f'{{outcome="unmatched"}}[{SLOW_WINDOW}]))',
                    "unmatched",
                )
            ],
        ),
        w=12,
    )
    layout.add(
        timeseries(
            "Weighings by quality",
            [
                target(
                    "sum by (station, quality) (rate(tollmon_weighings_total[$__rate_interval]))"
                    " * 60",
                    "{{station}} {{quality}}",
                )
            ],
            unit="veh/min",
        ),
        w=12,
    )
    return dashboard("tollmon-weighing", "tollmon / Weighing", layout)


def pipeline_health() -> Json:
    layout = Layout()
    layout.add(
        stat(
            "Workers up",
            'sum(up{job="tollmon"})',
            steps=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
        ),
        w=6,
        h=4,
    )
    layout.add(
        stat(
            "Invalid share of input (5 m)",
            "sum(rate(tollmon_events_invalid_total[5m]))"
            " / clamp_min(sum(rate(tollmon_events_total[5m]))"
            " + sum(rate(tollmon_events_invalid_total[5m])), 1e-9)",
            unit="percentunit",
        ),
        w=6,
        h=4,
    )
    layout.add(
        stat("Consumer lag (messages)", "sum(tollmon_consumer_lag_messages)"),
        w=6,
        h=4,
    )
    layout.add(
        stat(
            "Event lag p99",
            "histogram_quantile(0.99, sum by (le) (rate(tollmon_event_lag_seconds_bucket[5m])))",
            unit="s",
        ),
        w=6,
        h=4,
    )
    layout.add(
        timeseries(
            "Events per second by type",
            [
                target(
                    "sum by (type) (rate(tollmon_events_total[$__rate_interval]))",
                    "{{type}}",
                )
            ],
            unit="ops",
        )
    )
    layout.add(
        timeseries(
            "Invalid and late events per second",
            [
                target(
                    "sum by (reason) (rate(tollmon_events_invalid_total[$__rate_interval]))",
                    "invalid: {{reason}}",
                ),
                target(
                    "sum by (type) (rate(tollmon_events_late_total[$__rate_interval]))",
                    "late: {{type}}",
                    ref="B",
                ),
            ],
            unit="ops",
        )
    )
    layout.add(
        timeseries(
            "Event lag (processing time − event time)",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) "
                    "(rate(tollmon_event_lag_seconds_bucket[$__rate_interval])))",
                    f"p{round(q * 100)}",
                    ref=ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            unit="s",
        )
    )
    layout.add(
        timeseries(
            "Consumer lag by topic",
            [target("sum by (topic) (tollmon_consumer_lag_messages)", "{{topic}}")],
        )
    )
    layout.add(
        timeseries(
            "Worker scrape status",
            [target('up{job="tollmon"}', "{{instance}}")],
            decimals=0,
        )
    )
    layout.add(
        timeseries(
            "Alerts raised per hour by kind",
            [target("sum by (kind) (increase(tollmon_alerts_total[1h]))", "{{kind}}")],
        )
    )
    return dashboard("tollmon-pipeline", "tollmon / Pipeline health", layout)


DASHBOARDS = {
    "network-overview": network_overview,
    "plaza-detail": plaza_detail,
    "weighing": weighing,
    "pipeline-health": pipeline_health,
}


def render(build: Any) -> str:
    """A dashboard as the stable, diff-friendly JSON text kept in the repository."""
    return json.dumps(build(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (JSON_DIR / f"{name}.json").write_text(render(build), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
