"""Kafka security settings: what each client gets, and that the password stays hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tollmon.kafka_security import KafkaSecurity


def test_plaintext_by_default_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECURITY_PROTOCOL", "USERNAME", "PASSWORD", "PASSWORD_FILE", "CA_FILE"):
        monkeypatch.delenv(f"TOLLMON_KAFKA_{name}", raising=False)
    security = KafkaSecurity()
    assert security.faust_credentials() is None
    assert security.kafka_python_options() == {"security_protocol": "PLAINTEXT"}
    assert security.librdkafka_config() == {"security.protocol": "plaintext"}


def test_sasl_ssl_from_the_environment_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOLLMON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TOLLMON_KAFKA_USERNAME", "tollmon")
    monkeypatch.setenv("TOLLMON_KAFKA_PASSWORD", "hunter2")
    security = KafkaSecurity()
    assert "hunter2" not in repr(security)
    assert "hunter2" not in str(security)
    credentials = security.faust_credentials()
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert "hunter2" not in repr(credentials)
    options = security.kafka_python_options()
    assert options["sasl_plain_password"] == "hunter2"
    assert options["ssl_context"].check_hostname
    assert security.librdkafka_config()["sasl.password"] == "hunter2"


def test_password_read_from_a_file_without_its_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    security = KafkaSecurity(security_protocol="SASL_SSL", username="u", password_file=secret)
    assert security.secret() == "from-a-file"


@pytest.mark.parametrize(
    "fields",
    [
        {"security_protocol": "SASL_SSL", "username": "u"},
        {"security_protocol": "SASL_SSL", "password": "p"},
        {"password": "p", "password_file": "x"},
        {"security_protocol": "SSL", "cert_file": "c.pem"},
        {"security_protocol": "SASL_PLAINTEXT"},
    ],
)
def test_incomplete_or_unsafe_settings_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        KafkaSecurity(**fields)  # type: ignore[arg-type]
