"""Where the bus's Kafka endpoint is and how to log in to it: one answer for the relay's producer and the
projection's Spark source, so the two can never point at different hubs.

On Azure the bus is Event Hubs through its Kafka endpoint, ``<namespace>.servicebus.windows.net:9093``,
SASL_SSL/PLAIN with the literal user name ``$ConnectionString`` and a connection string as the password:
the producer logs in with a ``Send``-only one (``EVENTHUB_SEND_CONNECTION``, scope key
``eventhub-send-connection``), a consumer with a ``Listen``-only one (``EVENTHUB_LISTEN_CONNECTION``,
``eventhub-listen-connection``), so neither holds a right it never uses; a connection with both rights
(``EVENTHUB_CONNECTION``) is taken when the role's own is absent. Without a connection string but with
``KAFKA_BOOTSTRAP_SERVERS`` it is a plaintext broker (the local test broker).
"""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_orders.config import (
    EVENTHUB_CONNECTION,
    EVENTHUB_LISTEN_CONNECTION,
    EVENTHUB_SEND_CONNECTION,
    Secret,
    Settings,
)
from cqrs_orders.errors import ConfigurationError

CONNECTION_SECRET = EVENTHUB_CONNECTION  # both rights: the fallback when a role's own secret is absent
#: The secret each role logs in with: the publisher sends, the consumers listen.
ROLE_SECRETS = {
    "CQRS_PUBLISHER=kafka": EVENTHUB_SEND_CONNECTION,
    "CQRS_SOURCE=kafka": EVENTHUB_LISTEN_CONNECTION,
}
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

    def client_options(self) -> dict:
        """How a kafka-python client (the relay's producer, the lag monitor's bus reader) connects and
        logs in: one address and one SASL login for both."""
        options: dict = {"bootstrap_servers": self.bootstrap_servers}
        if self.is_event_hubs:
            options |= {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": CONNECTION_STRING_USER,
                "sasl_plain_password": self.connection.reveal(),
            }
        return options


def kafka_endpoint(settings: Settings, role: str) -> KafkaEndpoint:
    """The configured endpoint; ``role`` ("CQRS_SOURCE=kafka", "CQRS_PUBLISHER=kafka") chooses the secret
    (:data:`ROLE_SECRETS`) and names the setting that needs it in the error raised when none is configured."""
    own = ROLE_SECRETS.get(role, EVENTHUB_LISTEN_CONNECTION)  # any other role only reads the bus
    for name in (own, CONNECTION_SECRET):
        secret = settings.secret(name)
        if secret is not None:
            host = _namespace_host(secret.reveal(), settings.kafka_topic, name)
            return KafkaEndpoint(f"{host}:{EVENTHUBS_KAFKA_PORT}", secret)
    if settings.kafka_bootstrap_servers:
        return KafkaEndpoint(settings.kafka_bootstrap_servers)
    right = "Send" if own == EVENTHUB_SEND_CONNECTION else "Listen"
    raise ConfigurationError(
        f"{role} needs a broker: set {own} (an Event Hubs connection string of a {right}-only policy, from "
        "the environment or the CQRS_SECRET_SCOPE secret scope; EVENTHUB_CONNECTION with both rights is "
        "taken when it is absent) or KAFKA_BOOTSTRAP_SERVERS (host:port of a plaintext Kafka broker)."
    )


def _namespace_host(connection: str, topic: str, name: str = CONNECTION_SECRET) -> str:
    """``<namespace>.servicebus.windows.net`` from ``Endpoint=sb://<namespace>.servicebus.windows.net/;...``."""
    parts = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
    endpoint = parts.get("Endpoint", "")
    host = endpoint.removeprefix("sb://").split("/", 1)[0]
    if not endpoint.startswith("sb://") or not host:
        raise ConfigurationError(
            f"{name} is not an Event Hubs connection string: it needs "
            "'Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;SharedAccessKey=...' "
            "(copy it from the namespace's 'Shared access policies' in the Azure portal)."
        )
    entity = parts.get("EntityPath")
    if entity and entity != topic:
        raise ConfigurationError(
            f"{name} is scoped to the event hub {entity!r} but EVENTHUB_NAME is "
            f"{topic!r}: set them to the same event hub."
        )
    return host
