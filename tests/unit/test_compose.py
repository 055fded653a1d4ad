"""docker-compose.yml: valid under the Compose Specification, and every file, port and
service it names exists and agrees with config/ (no Docker engine is needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO.parent / "shared" / "compose-spec.json"
SERVICES = {"kafka", "kafka-init", "worker", "simulator", "prometheus", "alertmanager", "grafana"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(REPO / "docker-compose.yml"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> repository path of each bind mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = source
    return mounts


def env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service.get("environment", {}).items()}


def test_the_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # The specification is written in draft 7 (its $schema URL is not a known metaschema id).
    jsonschema.Draft7Validator(schema).validate(compose)


def test_it_runs_the_whole_system(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_every_mounted_file_and_the_build_context_exist(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for source in bind_mounts(service).values():
            assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").is_file()


def test_every_dependency_is_a_service(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_the_worker_scales(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker  # host ports would collide between replicas


def test_published_host_ports_are_distinct(services: dict[str, Any]) -> None:
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))


def test_the_workers_and_the_simulator_reach_kafka_on_its_advertised_listener(
    services: dict[str, Any],
) -> None:
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    broker = advertised.removeprefix("PLAINTEXT://")
    for name in ("worker", "simulator"):
        assert env(services[name])["TOLLMON_KAFKA_BOOTSTRAP"] == broker


def test_prometheus_scrapes_the_worker_port_with_the_local_jobs_and_rules(
    services: dict[str, Any],
) -> None:
    mounts = bind_mounts(services["prometheus"])
    config = load_yaml(REPO / mounts["/etc/prometheus/prometheus.yml"])
    local = load_yaml(REPO / "config" / "prometheus.yml")
    assert [j["job_name"] for j in config["scrape_configs"]] == [
        j["job_name"] for j in local["scrape_configs"]
    ]
    assert config["global"]["scrape_interval"] == local["global"]["scrape_interval"]
    tollmon = next(j for j in config["scrape_configs"] if j["job_name"] == "tollmon")
    (sd,) = tollmon["dns_sd_configs"]
    assert sd["names"] == ["worker"]
    assert str(sd["port"]) == env(services["worker"])["TOLLMON_WEB_PORT"]
    assert services["worker"]["expose"] == [env(services["worker"])["TOLLMON_WEB_PORT"]]
    rules_dir = next(c for c, s in mounts.items() if s == "./config/rules")
    assert config["rule_files"] == [f"{rules_dir}/*.yml"]


def test_prometheus_and_the_workers_send_alerts_to_the_alertmanager_service(
    services: dict[str, Any],
) -> None:
    mounts = bind_mounts(services["prometheus"])
    config = load_yaml(REPO / mounts["/etc/prometheus/prometheus.yml"])
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert target == "alertmanager:9093"
    assert "9093:9093" in services["alertmanager"]["ports"]
    assert env(services["worker"])["TOLLMON_ALERTMANAGER_URL"] == f"http://{target}"
    am_mounts = bind_mounts(services["alertmanager"])
    assert am_mounts["/etc/alertmanager/alertmanager.yml"] == "./config/alertmanager.yml"


def test_grafana_is_provisioned_with_the_dashboards_and_the_prometheus_service(
    services: dict[str, Any],
) -> None:
    mounts = bind_mounts(services["grafana"])
    assert (
        mounts["/etc/grafana/provisioning/datasources"] == "./dashboards/provisioning/datasources"
    )
    assert mounts["/etc/grafana/provisioning/dashboards"] == "./dashboards/provisioning/dashboards"
    (datasource,) = load_yaml(REPO / "dashboards/provisioning/datasources/tollmon.yml")[
        "datasources"
    ]
    assert datasource["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]
    (provider,) = load_yaml(REPO / "dashboards/provisioning/dashboards/tollmon.yml")["providers"]
    assert mounts[provider["options"]["path"]] == "./dashboards/json"


def test_the_topic_initialiser_reads_config_topics(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    (topics_in_container,) = [c for c, s in bind_mounts(init).items() if s == "./config/topics.txt"]
    assert topics_in_container in "".join(init["command"])


def test_the_network_file_the_app_reads_is_the_mounted_one(services: dict[str, Any]) -> None:
    for name in ("worker", "simulator"):
        network = env(services[name])["TOLLMON_NETWORK_FILE"]
        assert bind_mounts(services[name])[network] == "./config/network.yaml"
    assert "/app/config/network.yaml" in services["simulator"]["command"]


def test_the_image_installs_the_packages_the_app_imports() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\S+)/ ", dockerfile, flags=re.MULTILINE))
    assert {"tollmon", "detectors", "streams", "config", "dashboards"} <= copied
    assert 'ENTRYPOINT ["tollmon"]' in dockerfile


def test_the_image_runs_the_compiled_hot_path_without_the_compiler() -> None:
    build, runtime = (REPO / "Dockerfile").read_text(encoding="utf-8").split("\nFROM ")[1:]
    assert "tools/native.py build" in build
    # Both stages on the same interpreter: the build is keyed by its ABI.
    assert (build.split()[0], runtime.split()[0]) == ("python:3.11", "python:3.11-slim")
    assert "COPY --from=build /app /app" in runtime
    assert "COPY --from=build /opt/tollmon " in runtime
    assert "/opt/build" not in runtime  # mypy and the stubs stay behind
