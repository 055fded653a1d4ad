"""The Prometheus rules and the Alertmanager configuration, checked by the tools that
load them (`promtool`, `amtool`; Debian's prometheus and prometheus-alertmanager,
installed by tools/stack.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "config" / "rules"
ALERTMANAGER = REPO / "config" / "alertmanager.yml"


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which(tool)
    assert path is not None, f"{tool} is missing: run tools/stack.sh up (it installs it)"
    return subprocess.run([path, *args], capture_output=True, text=True, cwd=REPO, check=False)


def test_the_rule_files_are_valid() -> None:
    result = run("promtool", "check", "rules", *map(str, sorted(RULES.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rule_unit_tests_pass() -> None:
    result = run("promtool", "test", "rules", *map(str, sorted((RULES / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_loads_the_rules_it_is_configured_with() -> None:
    result = run("promtool", "check", "config", str(REPO / "config" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout + result.stderr


def test_the_alertmanager_config_is_valid() -> None:
    result = run("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=QUEUE_CONGESTION", "severity=warning"], "dispatch"),
        (["alertname=QUEUE_CONGESTION", "severity=critical"], "oncall-page,dispatch"),
        (["alertname=DATA_GAP", "severity=warning"], "dispatch"),
        (["alertname=LANE_STALLED", "severity=critical"], "oncall-page,dispatch"),
        (["alertname=SCALE_BIAS", "severity=warning"], "maintenance"),
        (["alertname=ETC_LANE_DEGRADED", "severity=warning"], "maintenance"),
        (["alertname=WEIGHT_DISCREPANCY", "severity=warning"], "maintenance"),
        (["alertname=OVERLOAD_ADMITTED", "severity=warning"], "maintenance"),
        (["alertname=TollmonWorkerDown", "severity=warning"], "platform"),
        (["alertname=TollmonAllWorkersDown", "severity=critical"], "platform"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else v,
)
def test_alerts_are_routed_by_kind_and_severity(labels: list[str], receivers: str) -> None:
    plaza_alert = labels[0].removeprefix("alertname=").isupper()
    extra = ["source=tollmon", "plaza=URC-E01"] if plaza_alert else ["instance=w1:6066"]
    result = run(
        "amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels, *extra
    )
    assert result.stdout.strip() == receivers, result.stderr
