"""All configuration, in one place.

Locally everything lives under one *warehouse* directory (``--warehouse DIR``, env ``CQRS_WAREHOUSE``,
default ``./warehouse``): the embedded write store, the embedded event log, every Delta table and every
streaming checkpoint. On Databricks the same logical tables map to Unity Catalog names
``catalog.schema.<logical_name>`` (set ``CQRS_CATALOG`` and ``CQRS_SCHEMA``).

Which adapters run is chosen here too: ``CQRS_WRITE_STORE`` (``sqlite`` | ``cosmos``),
``CQRS_PUBLISHER`` (``event_log`` | ``eventhubs``) and ``CQRS_SOURCE`` (``event_log`` | ``kafka``).
Secrets (connection strings, keys) are read from the environment or, on Databricks, from the secret scope
``CQRS_SECRET_SCOPE``; they are never logged (:class:`Secret` hides its value in ``repr``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cqrs_orders.errors import ConfigurationError

WAREHOUSE_ENV = "CQRS_WAREHOUSE"
DEFAULT_WAREHOUSE = "warehouse"

#: Every Delta table of the project, by logical name. Readers and writers name tables only through these.
TABLES = (
    "bronze_events",
    "bronze_quarantine",
    "silver_orders",
    "silver_customers",
    "gold_daily_order_metrics",
    "ops_stream_progress",
    "ops_projection_lag",
    "ops_quarantine_acknowledgements",  # versions accepted as lost (``cqrs-orders quarantine acknowledge``)
)
#: Views created over the tables (``sql/databricks``); resolvable by ``cqrs-orders sql`` like tables.
VIEWS = ("vw_order_summary", "vw_daily_order_metrics")
#: The event history: a view over ``bronze_events`` (``sql/databricks/silver_event_history.sql``).
EVENT_HISTORY = "silver_event_history"
#: Shipped views that earlier versions kept as tables of the same name: ``create-views`` drops such a table
#: (its rows were derived from bronze) to create the view.
FORMER_TABLES = (EVENT_HISTORY,)

#: The settings a command line may override (see ``Settings.from_env``): every non-secret one a job needs.
OVERRIDABLE = (
    "CQRS_CATALOG",
    "CQRS_SCHEMA",
    "CQRS_CHECKPOINT_ROOT",
    "CQRS_WRITE_STORE",
    "CQRS_PUBLISHER",
    "CQRS_SOURCE",
    "COSMOS_ENDPOINT",
    "COSMOS_DATABASE",
    "EVENTHUB_NAME",
    "KAFKA_BOOTSTRAP_SERVERS",
    "CQRS_SECRET_SCOPE",
    "CQRS_MAX_RECORDS_PER_BATCH",
)

#: ``CQRS_MAX_RECORDS_PER_BATCH``'s default: the most bus records one micro-batch of the projection reads.
#: A batch is held once in memory (its validated rows) while it is written: at ~1 KB a record (an order
#: event is about half that), 100,000 is ~100 MB, a tenth of the 1,000,000-record batch the projection
#: benchmark ran in a 4 GiB driver (benchmarks/RESULTS.md). Far less would slow a catch-up: each batch
#: also pays ~1.5 s of fixed work (a dozen Delta commits), most of a 10,000-record batch's time. On the
#: embedded log it is 1,000 files a batch, Delta's own default.
DEFAULT_MAX_RECORDS_PER_BATCH = 100_000

WriteStoreKind = Literal["sqlite", "cosmos"]
PublisherKind = Literal["event_log", "kafka"]
SourceKind = Literal["event_log", "kafka"]
RelayMode = Literal["off", "follow"]
CallerIdentity = Literal["required", "optional"]


class Secret:
    """A secret value that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def running_on_databricks(env: Mapping[str, str] = os.environ) -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in env


#: The secrets, by environment variable; in a Databricks secret scope each is the key :func:`scope_key`
#: names. Event Hubs has one connection per right, so each process holds only the right it uses: the
#: publisher (the command API app's relay, the ingest job) a ``Send`` policy's connection, the readers (the
#: projection, the lag monitor) a ``Listen`` one (docs/operations.md, "Which secret is used for what").
EVENTHUB_SEND_CONNECTION = "EVENTHUB_SEND_CONNECTION"
EVENTHUB_LISTEN_CONNECTION = "EVENTHUB_LISTEN_CONNECTION"
#: One connection with both rights: still read when the role's own secret is absent, so a laptop (and a
#: deployment made before the split) keeps working; the bundle hands it to nobody.
EVENTHUB_CONNECTION = "EVENTHUB_CONNECTION"
COSMOS_KEY = "COSMOS_KEY"


def scope_key(key: str) -> str:
    """The secret-scope key of the secret held in environment variable ``key``: lower case, ``_`` turned
    into ``-`` (``EVENTHUB_SEND_CONNECTION`` -> ``eventhub-send-connection``), as ``databricks secrets
    put-secret`` is usually spelled."""
    return key.lower().replace("_", "-")


def read_secret(key: str, env: Mapping[str, str] = os.environ) -> Secret | None:
    """Look a secret up: first the environment variable ``key``, then the Databricks secret scope
    ``CQRS_SECRET_SCOPE`` (key :func:`scope_key`).

    ``None`` means only "not set": not in the environment, and (with a scope) the scope answered that it
    holds no such key. Any other failure of the scope (the scope does not exist, this identity may not
    read it, the workspace cannot be reached) raises :class:`ConfigurationError` naming the scope, the key
    and the fix: read as "not set", a missing grant would silently turn a feature off (the alert webhook)
    or surface later as a misleading "not configured".
    """
    if env.get(key):
        return Secret(env[key])
    scope = env.get("CQRS_SECRET_SCOPE")
    if not scope:
        return None
    # On a cluster the runtime's dbutils; anywhere else the SDK's remote one, which asks the workspace's
    # Secrets API with the configured credentials (DATABRICKS_HOST/TOKEN): one path for both.
    try:
        from databricks.sdk.runtime import dbutils
    except ValueError as error:  # off a cluster, with no workspace credentials configured
        raise ConfigurationError(
            f"{key} is not in the environment and the secret scope {scope!r} cannot be read: no "
            f"Databricks workspace credentials ({str(error).split(',')[0]}). Set DATABRICKS_HOST and "
            f"DATABRICKS_TOKEN (or a profile), or set {key} in the environment."
        ) from None
    name = scope_key(key)
    try:
        return Secret(dbutils.secrets.get(scope=scope, key=name))
    except Exception as error:  # every failure is classified below; none is swallowed
        failure = _secret_failure(error)
        if failure == "absent":
            return None
        raise ConfigurationError(_secret_failure_message(failure, scope, name, key, error)) from None


def _secret_failure(error: Exception) -> str:
    """What a failed ``dbutils.secrets.get`` means: ``absent`` (the scope has no such key),
    ``scope-missing``, ``forbidden`` or ``other``.

    The SDK's remote dbutils raises its typed errors: 403 ``PermissionDenied``; 404 ``NotFound`` (on the
    real service ``ResourceDoesNotExist``, error code ``RESOURCE_DOES_NOT_EXIST``) both for a missing key
    ("Failed to get secret ...") and a missing scope ("Scope ... does not exist"), told apart only by the
    message. The runtime's own dbutils on a cluster raises a JVM error instead, matched by its text
    ("Secret does not exist with scope: ... and key: ..." for a missing key, "PERMISSION_DENIED"); only
    the SDK's answers are tested here. Anything not recognised is an error, never "unset".
    """
    from databricks.sdk.errors import NotFound, PermissionDenied

    text = str(error)
    if isinstance(error, PermissionDenied) or "PERMISSION_DENIED" in text:
        return "forbidden"
    if re.search(r"\bscope\b\s+\S+\s+does not exist", text, re.IGNORECASE):
        return "scope-missing"
    if getattr(error, "error_code", None) == "ENDPOINT_NOT_FOUND":  # not a Secrets API: a wrong host
        return "other"
    if isinstance(error, NotFound) or "Secret does not exist with scope" in text:
        return "absent"
    return "other"


def _secret_failure_message(failure: str, scope: str, name: str, key: str, error: Exception) -> str:
    grant = (
        f"grant this job's or app's identity READ on it: `databricks secrets put-acl {scope} <principal> "
        'READ` (docs/operations.md, "Which secret is used for what")'
    )
    if failure == "forbidden":
        return f"Not permitted to read the secret {name!r} of the secret scope {scope!r}: {grant}."
    if failure == "scope-missing":
        return (
            f"The secret scope {scope!r} does not exist (looking for {name!r}): create it with "
            f"`databricks secrets create-scope {scope}`, put the secrets, then {grant}; or pass the scope "
            "that holds them as --secret-scope."
        )
    return (
        f"Could not read the secret {name!r} of the secret scope {scope!r} "
        f"({type(error).__name__}: {str(error)[:200]}); check the workspace is reachable and, if it is, "
        f"{grant}; or set {key} in the environment."
    )


@dataclass(frozen=True)
class TableLocation:
    """Where one logical table lives: a folder under the warehouse locally, a Unity Catalog name on
    Databricks. Only names; reading and writing it is :mod:`cqrs_orders.pipeline.tables`' business."""

    logical_name: str
    path: str | None = None
    qualified_name: str | None = None
    #: With ``qualified_name``: the folder the table is created at as an external table (Synapse reads the
    #: files there); ``None``: a managed table, at a path Unity Catalog generates.
    external_path: str | None = None

    @property
    def sql_name(self) -> str:
        """The name to use inside Spark SQL text."""
        return self.qualified_name or f"delta.`{self.path}`"


@dataclass(frozen=True)
class Settings:
    """Where things live and which adapters run. Build it with :meth:`from_env`."""

    warehouse: Path
    catalog: str | None = None
    schema: str | None = None
    checkpoint_root: str | None = None
    write_store: WriteStoreKind = "sqlite"
    publisher: PublisherKind = "event_log"
    source: SourceKind = "event_log"
    event_log_partitions: int = 4
    max_records_per_batch: int = DEFAULT_MAX_RECORDS_PER_BATCH  # bus records per micro-batch, at most
    # Azure and Kafka: plain settings; secrets are looked up on demand with read_secret().
    cosmos_endpoint: str | None = None
    cosmos_database: str = "orders"
    cosmos_container: str = "order-store"
    eventhub_name: str = "order-events"
    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "order-events"
    lag_threshold_seconds: float = 60.0
    gold_refresh_seconds: float = 30.0  # while streaming, gold trails silver by at most this much
    alert_webhook_url: str | None = None
    sql_warehouse_id: str | None = None  # the HTTP server's read side on Databricks
    relay: RelayMode = "off"  # CQRS_RELAY=follow: `serve` runs a following relay in its process
    # CQRS_CALLER_IDENTITY: `serve` refuses (401) a request that names no caller ("required"; the default
    # when DATABRICKS_APP_NAME is set, i.e. as a Databricks App) or records it as anonymous ("optional").
    caller_identity: CallerIdentity = "optional"
    read_timeout_seconds: float = 30.0  # CQRS_READ_TIMEOUT_SECONDS: a read-model query, at most
    write_timeout_seconds: float = 60.0  # CQRS_WRITE_TIMEOUT_SECONDS: a request's commands, at most
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(
        cls,
        warehouse: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, str | None] | None = None,
    ):
        """Settings from ``--warehouse`` (wins) and the environment.

        ``overrides`` are settings given on the command line (job task parameters on Databricks, where
        serverless compute has no environment variables), keyed by the environment variable they replace
        (``{"CQRS_CATALOG": "main"}``); a ``None`` value means "not given". They win over the environment
        and go through the same validation, so a flag and its variable can never mean different things.
        """
        env = dict(os.environ if env is None else env)
        if warehouse is not None and not str(warehouse).strip():
            raise ConfigurationError(
                "--warehouse is empty; pass the warehouse folder, or leave the option out for "
                f"${WAREHOUSE_ENV} or ./{DEFAULT_WAREHOUSE}."
            )
        unknown = set(overrides or ()) - set(OVERRIDABLE)
        if unknown:
            raise ConfigurationError(f"Not a setting: {', '.join(sorted(unknown))}.")
        env.update({key: value for key, value in (overrides or {}).items() if value is not None})
        root = Path(warehouse or env.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE).expanduser().resolve()
        if not running_on_databricks(env):  # there tables live in Unity Catalog; the folder may be unused
            _check_warehouse(root)
        catalog, schema = env.get("CQRS_CATALOG"), env.get("CQRS_SCHEMA")
        if bool(catalog) != bool(schema):
            raise ConfigurationError("Set both CQRS_CATALOG and CQRS_SCHEMA (Unity Catalog), or neither.")
        return cls(
            warehouse=root,
            catalog=catalog or None,
            schema=schema or None,
            checkpoint_root=env.get("CQRS_CHECKPOINT_ROOT") or None,
            write_store=_choice(env, "CQRS_WRITE_STORE", "sqlite", ("sqlite", "cosmos")),
            publisher=_choice(env, "CQRS_PUBLISHER", "event_log", ("event_log", "kafka")),
            source=_choice(env, "CQRS_SOURCE", "event_log", ("event_log", "kafka")),
            event_log_partitions=_positive_int(env, "CQRS_EVENT_LOG_PARTITIONS", 4),
            max_records_per_batch=_positive_int(
                env, "CQRS_MAX_RECORDS_PER_BATCH", DEFAULT_MAX_RECORDS_PER_BATCH
            ),
            cosmos_endpoint=env.get("COSMOS_ENDPOINT") or None,
            cosmos_database=env.get("COSMOS_DATABASE", "orders"),
            cosmos_container=env.get("COSMOS_CONTAINER", "order-store"),
            eventhub_name=env.get("EVENTHUB_NAME", "order-events"),
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_topic=env.get("KAFKA_TOPIC", env.get("EVENTHUB_NAME", "order-events")),
            lag_threshold_seconds=float(env.get("CQRS_LAG_THRESHOLD_SECONDS", "60")),
            gold_refresh_seconds=_seconds_setting(env, "CQRS_GOLD_REFRESH_SECONDS", 30.0),
            alert_webhook_url=env.get("CQRS_ALERT_WEBHOOK_URL") or None,
            sql_warehouse_id=env.get("CQRS_SQL_WAREHOUSE_ID") or None,
            relay=_choice(env, "CQRS_RELAY", "off", ("off", "follow")),
            caller_identity=_choice(
                env,
                "CQRS_CALLER_IDENTITY",
                "required" if env.get("DATABRICKS_APP_NAME") else "optional",
                ("required", "optional"),
            ),
            read_timeout_seconds=_seconds_setting(env, "CQRS_READ_TIMEOUT_SECONDS", 30.0),
            write_timeout_seconds=_seconds_setting(env, "CQRS_WRITE_TIMEOUT_SECONDS", 60.0),
            env=env,
        )

    def secret(self, key: str) -> Secret | None:
        return read_secret(key, self.env)

    # --- where things live -------------------------------------------------------------------------
    @property
    def write_store_path(self) -> Path:
        return self.warehouse / "write_store.sqlite"

    @property
    def event_log_path(self) -> Path:
        return self.warehouse / "event_log"

    def checkpoint(self, query_name: str) -> str:
        root = self.checkpoint_root or str(self.warehouse / "_checkpoints")
        return f"{root.rstrip('/')}/{query_name}"

    def table(self, logical_name: str) -> TableLocation:
        if logical_name not in TABLES:
            raise ConfigurationError(f"Unknown table {logical_name!r}; known tables: {', '.join(TABLES)}.")
        if self.catalog:
            return TableLocation(logical_name, qualified_name=f"{self.catalog}.{self.schema}.{logical_name}")
        return TableLocation(logical_name, path=str(self.warehouse / logical_name))


def _check_warehouse(root: Path) -> None:
    """Refuse, before anything opens it, a warehouse that cannot be a folder of ours.

    Without writing anything: the path itself, or (when it does not exist yet) its nearest existing
    ancestor, must be a directory this process may write into. That catches a regular file or a device
    (``/dev/null``) as well as kernel folders such as ``/proc/1``, which exist but take no new files.
    """
    existing = root
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    fix = f"pass a folder you can write to as --warehouse (or {WAREHOUSE_ENV}); it is created if missing"
    if not os.path.isdir(existing):
        where = "" if existing == root else f" ({existing} is a file)"
        raise ConfigurationError(f"The warehouse {root} is not a directory{where}; {fix}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == root else f" ({existing} takes no new folders)"
        raise ConfigurationError(f"The warehouse {root} cannot be written by this user{where}; {fix}.")


def _choice(env: Mapping[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(key, default)
    if value not in allowed:
        raise ConfigurationError(f"{key}={value!r} is not one of: {', '.join(allowed)}.")
    return value


def _positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{key}={raw!r} must be a positive integer.")
    return int(raw)


def positive_seconds(text: str | float) -> float:
    """A finite number of seconds above 0; ``ValueError`` otherwise (``nan`` and ``inf`` too:
    one would make a wait loop spin, the other overflows every timer it reaches)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{text!r} is not a positive, finite number of seconds")
    return value


def _seconds_setting(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, str(default))
    try:
        return positive_seconds(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} must be a positive number of seconds.") from None
