"""Where the bus's Kafka endpoint is and how to log in to it: one answer for the relay's producer and the
projection's Spark source, so the two can never point at different hubs.

On Azure the bus is Event Hubs through its Kafka endpoint, ``<namespace>.servicebus.windows.net:9093``,
SASL_SSL/PLAIN with the literal user name ``$ConnectionString`` and the namespace connection string as the
password (``EVENTHUB_CONNECTION``: the environment or the secret scope's ``eventhub-connection``). Without a
connection string but with ``KAFKA_BOOTSTRAP_SERVERS`` it is a plaintext broker (the local test broker).
"""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_orders.config import Secret, Settings
from cqrs_orders.errors import ConfigurationError

CONNECTION_SECRET = "EVENTHUB_CONNECTION"
EVENTHUBS_KAFKA_PORT = 9093
#: What Event Hubs' Kafka endpoint takes as the SASL/PLAIN user name when the password is a connection string.
CONNECTION_STRING_USER = "$ConnectionString"


@dataclass(frozen=True)
class KafkaEndpoint:
    """A broker address and, for Event Hubs, the connection string to log in with (``None``: plaintext)."""

    bootstrap_servers: str
    connection: Secret | None = None

    @property
    def is_event_hubs(self) -> bool:
        return self.connection is not None


def kafka_endpoint(settings: Settings, role: str) -> KafkaEndpoint:
    """The configured endpoint; ``role`` ("CQRS_SOURCE=kafka", "CQRS_PUBLISHER=kafka") names the setting
    that needs it in the error raised when none is configured."""
    secret = settings.secret(CONNECTION_SECRET)
    if secret is not None:
        host = _namespace_host(secret.reveal(), settings.kafka_topic)
        return KafkaEndpoint(f"{host}:{EVENTHUBS_KAFKA_PORT}", secret)
    if settings.kafka_bootstrap_servers:
        return KafkaEndpoint(settings.kafka_bootstrap_servers)
    raise ConfigurationError(
        f"{role} needs a broker: set EVENTHUB_CONNECTION (an Event Hubs namespace connection "
        "string, from the environment or the CQRS_SECRET_SCOPE secret scope) or KAFKA_BOOTSTRAP_SERVERS "
        "(host:port of a plaintext Kafka broker)."
    )


def _namespace_host(connection: str, topic: str) -> str:
    """``<namespace>.servicebus.windows.net`` from ``Endpoint=sb://<namespace>.servicebus.windows.net/;...``."""
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    endpoint = parts.get("Endpoint", "")
    host = endpoint.removeprefix("sb://").split("/", 1)[0]
    if not endpoint.startswith("sb://") or not host:
        raise ConfigurationError(
            "EVENTHUB_CONNECTION is not an Event Hubs connection string: it needs "
            "'Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...' "
            "(copy it from the namespace's 'Shared access policies' in the Azure portal)."
        )
    entity = parts.get("EntityPath")
    if entity and entity != topic:
        raise ConfigurationError(
            f"EVENTHUB_CONNECTION is scoped to the event hub {entity!r} but KAFKA_TOPIC/EVENTHUB_NAME is "
            f"{topic!r}: set them to the same event hub."
        )
    return host
