"""Settings every service shares. Each service subclasses `CommonSettings` with its own env prefix.

Shared values keep their well-known unprefixed names (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL) so one environment
configures every service, as in the devstack, docker-compose and the k8s ConfigMap.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore", env_ignore_empty=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "TANDEM_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # How clients prove themselves to Kafka (tandem_shared.kafka.security); PLAINTEXT needs none of the rest.
    kafka_security_protocol: str = Field(default="PLAINTEXT", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL"))
    kafka_ssl_ca_file: str | None = Field(default=None, validation_alias=AliasChoices("KAFKA_SSL_CA_FILE"))
    kafka_ssl_cert_file: str | None = Field(default=None, validation_alias=AliasChoices("KAFKA_SSL_CERT_FILE"))
    kafka_ssl_key_file: str | None = Field(default=None, validation_alias=AliasChoices("KAFKA_SSL_KEY_FILE"))
    kafka_sasl_mechanism: str = Field(default="SCRAM-SHA-512", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM"))
    # A value, or a secret reference (file:/path, env:NAME) resolved when a client is built.
    kafka_sasl_username: str | None = Field(default=None, validation_alias=AliasChoices("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(default=None, validation_alias=AliasChoices("KAFKA_SASL_PASSWORD"))
    # While Kafka refuses a service's credentials (or does not answer) at start: how often it asks again, and logs
    # why it is not ready (tandem_shared.kafka.gate).
    kafka_retry_s: float = Field(default=15.0, gt=0, validation_alias=AliasChoices("TANDEM_KAFKA_RETRY_S"))
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "TANDEM_REDIS_URL"),
    )
    # A Redis ACL user (Redis 6+): its name, and its password as a secret reference (`file:/path`, `env:NAME`),
    # resolved when a connection is made. Unset: the URL's credentials, if any, or none.
    redis_username: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_USERNAME"))
    redis_password: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_PASSWORD"))
    # For rediss:// URLs: the CA that signed the server's certificate (default: the system's trust store).
    redis_ssl_ca_file: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_SSL_CA_FILE"))
    log_level: str = Field(default="INFO", validation_alias=AliasChoices("TANDEM_LOG_LEVEL"))
    log_json: bool = Field(default=True, validation_alias=AliasChoices("TANDEM_LOG_JSON"))
