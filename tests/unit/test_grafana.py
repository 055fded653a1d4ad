"""`tollmon dashboards publish` against a recording stand-in for Grafana's HTTP API, and
the generated dashboards kept in the repository."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
from werkzeug import Request, Response

from tollmon.cli import app
from tollmon.grafana import DASHBOARD_DIR, DATASOURCE_FILE, load_dashboards, load_datasource
from tollmon.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
TOKEN = "glsa_test-token"


@dataclass
class FakeGrafana:
    """The few endpoints `publish` uses, with state, recording every request."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    unauthorized: int = 0

    def handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.unauthorized += 1
            return _json({"message": "Unauthorized"}, 401)
        self.requests.append((request.method, request.path))
        body = request.get_json(silent=True) or {}
        route = (request.method, *request.path.removeprefix("/api/").split("/"))
        reply: Response = _json({"message": f"unexpected {request.method} {request.path}"}, 500)
        match route:
            case ("GET", "folders", uid):
                reply = self._found(self.folders.get(uid))
            case ("POST", "folders"):
                self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 7}
                reply = _json(self.folders[body["uid"]])
            case ("GET", "datasources", "uid", uid):
                reply = self._found(self.datasources.get(uid))
            case ("POST", "datasources"):
                self.datasources[body["uid"]] = {**body, "id": 3, "orgId": 1}
                reply = _json({"datasource": self.datasources[body["uid"]]})
            case ("GET", "dashboards", "uid", uid):
                reply = self._found(self.dashboards.get(uid))
            case ("POST", "dashboards", "db"):
                dashboard = {**body["dashboard"], "id": 11, "version": 1}
                meta = {"folderUid": body["folderUid"]}
                self.dashboards[dashboard["uid"]] = {"dashboard": dashboard, "meta": meta}
                reply = _json({"status": "success", "uid": dashboard["uid"]})
        return reply

    @staticmethod
    def _found(item: dict[str, Any] | None) -> Response:
        return _json(item) if item is not None else _json({"message": "not found"}, 404)

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method != "GET"]


def _json(data: object, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")


@pytest.fixture
def grafana(httpserver: HTTPServer) -> FakeGrafana:
    fake = FakeGrafana()
    httpserver.expect_request(re.compile("/api/.*")).respond_with_handler(fake.handle)
    return fake


def run_publish(httpserver: HTTPServer, **env: str) -> Any:
    return CliRunner().invoke(
        app,
        ["dashboards", "publish", "--url", httpserver.url_for("/").rstrip("/")],
        env={"GRAFANA_TOKEN": TOKEN, **env},
        catch_exceptions=False,
    )


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # The command's defaults are paths relative to the repository root.
    monkeypatch.chdir(REPO)


def test_first_publish_creates_the_folder_datasource_and_every_dashboard(
    httpserver: HTTPServer, grafana: FakeGrafana
) -> None:
    result = run_publish(httpserver)

    assert result.exit_code == 0, result.output
    uids = sorted(d["uid"] for d in load_dashboards(DASHBOARD_DIR))
    assert grafana.writes() == [
        ("POST", "/api/folders"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * len(uids),
    ]
    assert grafana.folders["tollmon"]["title"] == "tollmon"
    assert grafana.datasources["tollmon-prometheus"]["url"] == "http://prometheus:9090"
    assert sorted(grafana.dashboards) == uids
    assert {d["meta"]["folderUid"] for d in grafana.dashboards.values()} == {"tollmon"}
    assert grafana.unauthorized == 0


def test_a_second_publish_only_reads(httpserver: HTTPServer, grafana: FakeGrafana) -> None:
    run_publish(httpserver)
    first_writes = len(grafana.writes())

    result = run_publish(httpserver)

    assert result.exit_code == 0, result.output
    assert len(grafana.writes()) == first_writes
    assert "0 change(s)" in result.output


def test_a_dashboard_edited_in_grafana_is_put_back_and_nothing_else(
    httpserver: HTTPServer, grafana: FakeGrafana
) -> None:
    run_publish(httpserver)
    grafana.dashboards["tollmon-plaza"]["dashboard"]["title"] = "edited by hand"
    before = len(grafana.writes())

    result = run_publish(httpserver)

    assert result.exit_code == 0, result.output
    assert grafana.writes()[before:] == [("POST", "/api/dashboards/db")]
    assert grafana.dashboards["tollmon-plaza"]["dashboard"]["title"] == "tollmon / Plaza detail"


def test_publish_refuses_to_run_without_a_token(httpserver: HTTPServer) -> None:
    result = CliRunner().invoke(
        app, ["dashboards", "publish", "--url", httpserver.url_for("/")], env={"GRAFANA_TOKEN": ""}
    )
    assert result.exit_code != 0
    assert "GRAFANA_TOKEN" in str(result.exception)
    assert httpserver.log == []


def test_the_datasource_url_can_point_elsewhere() -> None:
    source = load_datasource(DATASOURCE_FILE, "http://127.0.0.1:9090")
    assert source["url"] == "http://127.0.0.1:9090"
    assert source["uid"] == "tollmon-prometheus"


# ---------------------------------------------------------------- the dashboards


def generated() -> dict[str, str]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", REPO / "dashboards" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: module.render(build) for name, build in module.DASHBOARDS.items()}


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    for name, text in generated().items():
        path = REPO / DASHBOARD_DIR / f"{name}.json"
        assert path.read_text(encoding="utf-8") == text, f"run dashboards/generate.py ({name})"


def test_every_panel_queries_the_provisioned_datasource_and_only_known_metrics() -> None:
    declared = {metric.name for metric in Metrics.create().registry.collect()}
    datasource_uid = load_datasource(DATASOURCE_FILE)["uid"]
    for dashboard in load_dashboards(DASHBOARD_DIR):
        assert dashboard["panels"], dashboard["uid"]
        for panel in dashboard["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == datasource_uid
                for name in re.findall(r"\btollmon_[a-z_]+", target["expr"]):
                    base = re.sub(r"_(total|bucket|sum|count)$", "", name)
                    assert base in declared, f"{panel['title']}: {name} is not in tollmon.metrics"


def test_panel_ids_are_unique_within_each_dashboard() -> None:
    for dashboard in load_dashboards(DASHBOARD_DIR):
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
