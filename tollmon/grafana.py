"""`tollmon dashboards publish`: the folder, datasource and dashboards, put into Grafana.

Idempotent: each object is read first and written only when it differs, so a
second run against an up-to-date Grafana only reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from tollmon.errors import ConfigError, TollmonError

FOLDER_UID = "tollmon"
FOLDER_TITLE = "tollmon"
DASHBOARD_DIR = Path("dashboards/json")
DATASOURCE_FILE = Path("dashboards/provisioning/datasources/tollmon.yml")
TOKEN_VARIABLE = "GRAFANA_TOKEN"
# Fields Grafana assigns itself; comparing them would make every run look like a change.
_SERVER_FIELDS = frozenset({"id", "version"})
_DATASOURCE_FIELDS = ("name", "uid", "type", "access", "url", "isDefault", "jsonData")

dashboards_app = typer.Typer(
    help="Grafana dashboards: publish them to a Grafana instance.", no_args_is_help=True
)

Json = dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One write made to Grafana (`action` is created or updated)."""

    kind: str
    uid: str
    action: str


def load_dashboards(directory: Path) -> list[Json]:
    """Every dashboard JSON file of `directory`, in name order."""
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ConfigError(str(directory), ["no dashboard JSON files"])
    return [json.loads(f.read_text(encoding="utf-8")) for f in files]


def load_datasource(provisioning_file: Path, url: str | None = None) -> Json:
    """The single datasource of a Grafana provisioning file, in the HTTP API's shape."""
    data = yaml.safe_load(provisioning_file.read_text(encoding="utf-8"))
    sources = data.get("datasources") or []
    if len(sources) != 1:
        raise ConfigError(str(provisioning_file), ["datasources: expected exactly one"])
    source = {k: sources[0][k] for k in _DATASOURCE_FIELDS if k in sources[0]}
    if url is not None:
        source["url"] = url
    return source


def publish(
    api: Any, datasource: Json, dashboards: Iterable[Json], folder_title: str = FOLDER_TITLE
) -> list[Change]:
    """Create or update the folder, the datasource and each dashboard; returns the writes.

    `api` is a `grafana_client.GrafanaApi`, typed Any because its element methods are
    untyped.
    """
    changes: list[Change] = []
    folder = _get(lambda: api.folder.get_folder(FOLDER_UID))
    if folder is None:
        api.folder.create_folder(folder_title, uid=FOLDER_UID)
        changes.append(Change("folder", FOLDER_UID, "created"))
    elif folder.get("title") != folder_title:
        api.folder.update_folder(FOLDER_UID, title=folder_title, overwrite=True)
        changes.append(Change("folder", FOLDER_UID, "updated"))

    uid = datasource["uid"]
    current = _get(lambda: api.datasource.get_datasource_by_uid(uid))
    if current is None:
        api.datasource.create_datasource(datasource)
        changes.append(Change("datasource", uid, "created"))
    elif {k: current.get(k) for k in datasource} != datasource:
        api.datasource.update_datasource_by_uid(uid, {**current, **datasource})
        changes.append(Change("datasource", uid, "updated"))

    for dashboard in dashboards:
        changes.extend(_publish_dashboard(api, dashboard))
    return changes


def _publish_dashboard(api: Any, dashboard: Json) -> list[Change]:
    uid = dashboard["uid"]
    stored = _get(lambda: api.dashboard.get_dashboard(uid))
    wanted = _without_server_fields(dashboard)
    if stored is not None:
        same_folder = stored.get("meta", {}).get("folderUid") == FOLDER_UID
        if same_folder and _without_server_fields(stored["dashboard"]) == wanted:
            return []
    api.dashboard.update_dashboard(
        {
            "dashboard": {**wanted, "id": None},
            "folderUid": FOLDER_UID,
            "overwrite": True,
            "message": "tollmon dashboards publish",
        }
    )
    return [Change("dashboard", uid, "created" if stored is None else "updated")]


def _without_server_fields(dashboard: Json) -> Json:
    return {k: v for k, v in dashboard.items() if k not in _SERVER_FIELDS}


def _get(read: Callable[[], Json]) -> Json | None:
    """The object, or None when Grafana answers 404."""
    from grafana_client.client import GrafanaClientError

    try:
        return read()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


@dashboards_app.command("publish")
def publish_command(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. https://grafana.example.org")],
    dashboards: Annotated[Path, typer.Option(help="Directory of dashboard JSON.")] = DASHBOARD_DIR,
    datasource_file: Annotated[
        Path, typer.Option(help="Grafana datasource provisioning YAML.")
    ] = DATASOURCE_FILE,
    prometheus_url: Annotated[
        str | None, typer.Option(help="Prometheus URL as Grafana reaches it (default: the file's).")
    ] = None,
) -> None:
    """Create or update the tollmon folder, datasource and dashboards (token: GRAFANA_TOKEN)."""
    # The token stays out of argv (and so out of shell history and `ps`).
    from grafana_client.api import GrafanaApi

    token = os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise TollmonError(f"set {TOKEN_VARIABLE} to a Grafana service-account token")
    api = GrafanaApi.from_url(url, credential=token)
    changes = publish(
        api, load_datasource(datasource_file, prometheus_url), load_dashboards(dashboards)
    )
    out = Console(stderr=True)
    for change in changes:
        out.print(f"{change.action} {change.kind} {change.uid}")
    out.print(f"[green]{len(changes)} change(s)[/green] at {url}")
