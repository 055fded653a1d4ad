"""How tollmon's Kafka clients authenticate and encrypt, from `TOLLMON_KAFKA_*` settings.

One place turns the settings into what each client library wants: Faust (aiokafka)
takes `broker_credentials`, kafka-python and librdkafka take keyword/config options.
Keeping the translation here means every client speaks the same protocol to the
broker, and the password only ever leaves its `SecretStr` at the call into a client.

Read from its own environment prefix rather than as fields of `Settings`, so the
security options can be built wherever a client is made (worker, publisher, replay,
tests) without passing the whole worker configuration around.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaSecurity(BaseSettings):
    """`TOLLMON_KAFKA_SECURITY_PROTOCOL`, `_SASL_MECHANISM`, `_USERNAME`, `_PASSWORD`, ...

    PLAINTEXT (the default) changes nothing for the local stack. SASL_PLAINTEXT is
    deliberately not offered: it would send SCRAM exchanges and all data unencrypted.
    """

    model_config = SettingsConfigDict(env_prefix="TOLLMON_KAFKA_", frozen=True, extra="ignore")

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    # A mounted secret (Kubernetes, Docker) is a file: read it rather than copying it
    # into an environment variable that `ps e` and crash dumps would show.
    password_file: Path | None = None
    # Without a CA file the system trust store is used (a broker with a public cert).
    ca_file: Path | None = None
    # Client certificate and key, for brokers that require mutual TLS.
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set TOLLMON_KAFKA_PASSWORD or TOLLMON_KAFKA_PASSWORD_FILE, not both")
        if self.security_protocol == "SASL_SSL" and (
            not self.username or (self.password is None and self.password_file is None)
        ):
            raise ValueError(
                "SASL_SSL needs TOLLMON_KAFKA_USERNAME and TOLLMON_KAFKA_PASSWORD"
                " (or TOLLMON_KAFKA_PASSWORD_FILE)"
            )
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TOLLMON_KAFKA_CERT_FILE and TOLLMON_KAFKA_KEY_FILE go together")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol == "SASL_SSL"

    def secret(self) -> str:
        """The SASL password, read from its file if configured that way."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            # Secret files usually end with a newline that is not part of the password.
            return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        raise ValueError("no Kafka password configured")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying TLS context (hostname checked), or None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
        )
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def faust_credentials(self) -> Any:
        """`broker_credentials` for `faust.App`, or None for PLAINTEXT.

        Typed Any because faust ships no type information.
        """
        from faust.auth import SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if context is None:
            return None
        if self.uses_sasl:
            return SASLCredentials(
                username=self.username,
                password=self.secret(),
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        return SSLCredentials(context)

    def kafka_python_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.uses_sasl:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.secret(),
            }
        return options

    def librdkafka_config(self) -> dict[str, str]:
        """Configuration entries for confluent-kafka (librdkafka) clients."""
        config = {"security.protocol": self.security_protocol.lower()}
        if self.uses_tls:
            if self.ca_file is not None:
                config["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file is not None and self.key_file is not None:
                config["ssl.certificate.location"] = str(self.cert_file)
                config["ssl.key.location"] = str(self.key_file)
        if self.uses_sasl:
            config |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.username or "",
                "sasl.password": self.secret(),
            }
        return config
