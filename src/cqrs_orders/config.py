"""All configuration, in one place: every setting is declared once in :data:`SETTINGS`.

Each :class:`Setting` names its environment variable, its command-line option (``--catalog``; only for the
settings a job or the notebook passes, since serverless compute has no environment variables), the
``databricks.yml`` variable the bundle fills it from, its default and what it is for.
:meth:`Settings.from_env`, the CLI's common options (:mod:`cqrs_orders.cli`) and ``docs/configuration.md``
(``python -m cqrs_orders.config``) are all derived from that table; no other module reads the environment.

Locally everything lives under one *warehouse* directory (``--warehouse DIR``, default ``./warehouse``); on
Databricks the same logical tables map to Unity Catalog names ``catalog.schema.<logical_name>``. Secrets
(connection strings, keys) are read from the environment or, on Databricks, from the secret scope; they are
never logged (:class:`Secret` hides its value in ``repr``).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from cqrs_orders.errors import ConfigurationError

#: Every Delta table of the project, by logical name. Readers and writers name tables only through these.
TABLES = (
    "bronze_events",
    "bronze_quarantine",
    "silver_orders",
    "silver_customers",
    "silver_product_sales",
    "gold_daily_order_metrics",
    "ops_stream_progress",
    "ops_projection_lag",
    "ops_quarantine_acknowledgements",  # versions accepted as lost (``cqrs-orders quarantine acknowledge``)
    "ops_erasures",  # customers whose personal data was erased (``cqrs-orders erase-customer``)
    "ops_rebuilds",  # each rebuild's table versions, what ``cqrs-orders rebuild --rollback`` restores
)
#: Views created over the tables (``sql/databricks``); resolvable by ``cqrs-orders sql`` like tables.
VIEWS = ("vw_order_summary", "vw_daily_order_metrics")
#: The event history: a view over ``bronze_events`` (``sql/databricks/silver_event_history.sql``).
EVENT_HISTORY = "silver_event_history"

#: ``max_records_per_batch``'s default: the most bus records one micro-batch of the projection reads.
#: A batch is held once in memory (its validated rows) while it is written, so it must stay a small share
#: of the driver's heap; and each batch also pays a fixed cost (a dozen Delta commits), so it must be large
#: enough for that cost to stay a small share of its time. The sizing figures: benchmarks/RESULTS.md and
#: docs/operations.md ("Catch-up is bounded"). On the embedded log it is 1,000 files a batch, Delta's own
#: default.
DEFAULT_MAX_RECORDS_PER_BATCH = 100_000

WriteStoreKind = Literal["sqlite", "cosmos"]
PublisherKind = Literal["event_log", "kafka"]
SourceKind = Literal["event_log", "kafka"]
RelayMode = Literal["off", "follow"]
CallerIdentity = Literal["required", "optional"]

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
ALERT_WEBHOOK_URL = "CQRS_ALERT_WEBHOOK_URL"

#: Set by Databricks on its compute (never by us): its presence means "running on Databricks".
RUNTIME_VERSION_ENV = "DATABRICKS_RUNTIME_VERSION"
#: Spark's own variable, read by the JVM it launches; a local session defaults it
#: (:func:`prepare_local_spark`).
SPARK_LOCAL_IP_ENV = "SPARK_LOCAL_IP"


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: everything else about it (its :class:`Settings` field, its CLI option,
    its line in docs/configuration.md) is derived from this.

    ``flag``: the option every ``cqrs-orders`` subcommand takes for it (``None``: environment only); only
    settings a job or the command-ingest notebook passes have one, because serverless compute has no
    environment variables. ``bundle_variable``: the ``databricks.yml`` variable the bundle fills it from.
    ``kind`` picks how the text is checked and converted (:data:`_PARSERS`); ``choices`` limits it.
    """

    name: str
    env: str
    help: str
    default: object = None
    flag: str | None = None
    bundle_variable: str | None = None
    kind: str = "text"
    choices: tuple[str, ...] = ()
    secret: bool = False
    #: How the docs state a default that is not a plain value (one derived at run time).
    default_doc: str | None = None

    def parse(self, raw: str | None) -> object:
        """The value of this setting given the text ``raw`` (``None`` or blank: the default)."""
        if raw is None or not raw.strip():
            return self.default
        if self.choices and raw not in self.choices:
            raise ConfigurationError(f"{self.env}={raw!r} is not one of: {', '.join(self.choices)}.")
        return _PARSERS[self.kind](self.env, raw)

    @property
    def metavar(self) -> str:
        """How ``--help`` names the option's value: its choices, or what kind of value it takes."""
        if self.choices:
            return "{" + ",".join(self.choices) + "}"
        return "DIR" if self.kind == "path" else "N" if self.kind in ("count", "seconds") else "VALUE"


def _count(env: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"{env}={raw!r} must be a positive integer.")
    return int(raw)


def _seconds(env: str, raw: str) -> float:
    try:
        return positive_seconds(raw)
    except ValueError:
        raise ConfigurationError(f"{env}={raw!r} must be a positive number of seconds.") from None


def _port(env: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigurationError(f"{env}={raw!r} must be a port number.")
    return int(raw)


_SIZE = re.compile(r"^(\d+)\s*([kmgt]?)b?$", re.IGNORECASE)
_MIB_PER_UNIT = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}
#: Spark refuses to run on a heap under 450 MiB (1.5 x its 300 MiB reserve); leave it a little room.
MIN_DRIVER_MEMORY_MIB = 512


def _memory(env: str, raw: str) -> str:
    """A JVM heap size, checked here: a JVM that cannot start says only "gateway exited", which would
    otherwise be blamed on Java or the jars."""
    match = _SIZE.match(raw.strip())
    if not match:
        raise ConfigurationError(f"{env}={raw!r} is not a memory size; set it like 4g or 1536m (or unset it)")
    if int(match.group(1)) * _MIB_PER_UNIT[match.group(2).lower()] < MIN_DRIVER_MEMORY_MIB:
        raise ConfigurationError(
            f"{env}={raw!r} is too small: Spark needs at least {MIN_DRIVER_MEMORY_MIB}m for the driver; set "
            "it to 1g or more (or unset it)."
        )
    return f"{match.group(1)}{match.group(2).lower()}"


_PARSERS = {
    "text": lambda env, raw: raw,
    "path": lambda env, raw: raw,
    "count": _count,
    "seconds": _seconds,
    "port": _port,
    "memory": _memory,
}

#: Every setting. Order is the order of the docs and of ``--help``.
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # Where things live.
    Setting("warehouse", "CQRS_WAREHOUSE", "folder holding the write store, event log, Delta tables and "
            "checkpoints (created if missing)", "warehouse", flag="--warehouse", kind="path",
            default_doc="./warehouse"),
    Setting("catalog", "CQRS_CATALOG", "Unity Catalog catalog of the tables (with --schema)",
            flag="--catalog", bundle_variable="catalog"),
    Setting("schema", "CQRS_SCHEMA", "Unity Catalog schema of the tables (with --catalog)",
            flag="--schema", bundle_variable="schema"),
    Setting("checkpoint_root", "CQRS_CHECKPOINT_ROOT", "folder (or volume path) of the streaming "
            "checkpoints", flag="--checkpoint-root", default_doc="<warehouse>/_checkpoints"),
    # Which adapters run.
    Setting("write_store", "CQRS_WRITE_STORE", "the write store: the embedded SQLite file or Cosmos DB",
            "sqlite", flag="--write-store", choices=("sqlite", "cosmos")),
    Setting("command_id_retention_days", "CQRS_COMMAND_ID_RETENTION_DAYS", "days the write store keeps a "
            "`commandId`: a retry within them answers the first result, a later one runs as a new command "
            '(docs/operations.md, "Idempotency window")', 30, flag="--command-id-retention-days",
            bundle_variable="command_id_retention_days", kind="count"),
    Setting("publisher", "CQRS_PUBLISHER", "where the relay publishes: the embedded event log or Kafka "
            "(Event Hubs)", "event_log", flag="--publisher", choices=("event_log", "kafka")),
    Setting("source", "CQRS_SOURCE", "what the projection reads: the embedded event log or Kafka "
            "(Event Hubs)", "event_log", flag="--source", choices=("event_log", "kafka")),
    Setting("max_records_per_batch", "CQRS_MAX_RECORDS_PER_BATCH", "most bus records one micro-batch of the "
            "projection reads", DEFAULT_MAX_RECORDS_PER_BATCH, flag="--max-records-per-batch",
            bundle_variable="max_records_per_batch", kind="count"),
    # Azure and Kafka: plain settings; their secrets are below.
    Setting("cosmos_endpoint", "COSMOS_ENDPOINT", "Cosmos DB account endpoint URL", flag="--cosmos-endpoint",
            bundle_variable="cosmos_endpoint"),
    Setting("cosmos_database", "COSMOS_DATABASE", "Cosmos DB database of the write store", "orders",
            flag="--cosmos-database", bundle_variable="cosmos_database"),
    Setting("cosmos_container", "COSMOS_CONTAINER", "Cosmos DB container of the write store", "order-store"),
    Setting("kafka_topic", "EVENTHUB_NAME", "the event hub (its Kafka topic) carrying the events",
            "order-events", flag="--eventhub-name", bundle_variable="eventhub_name"),
    Setting("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "a plaintext Kafka broker instead of Event "
            "Hubs (a laptop's or a test's)", flag="--kafka-bootstrap-servers"),
    Setting("secret_scope", "CQRS_SECRET_SCOPE", "Databricks secret scope holding the secrets below",
            flag="--secret-scope", bundle_variable="secret_scope"),
    # The HTTP server (`cqrs-orders serve`, the command API app).
    Setting("sql_warehouse_id", "CQRS_SQL_WAREHOUSE_ID", "SQL warehouse serving the read models to `serve` "
            "(with CQRS_CATALOG/CQRS_SCHEMA); unset: the local Delta tables", bundle_variable="warehouse_id"),
    Setting("relay", "CQRS_RELAY", "`follow`: `serve` also runs a following relay (as `serve --relay`)",
            "off", choices=("off", "follow")),
    Setting("caller_identity", "CQRS_CALLER_IDENTITY", "`required`: `serve` refuses (401) a request that "
            "names no caller; `optional`: it records it as anonymous", choices=("required", "optional"),
            default_doc="required as a Databricks App, else optional"),
    Setting("read_timeout_seconds", "CQRS_READ_TIMEOUT_SECONDS", "a read-model query of `serve`, at most "
            "(past it: 503 READ_SIDE_UNAVAILABLE)", 30.0, kind="seconds"),
    Setting("write_timeout_seconds", "CQRS_WRITE_TIMEOUT_SECONDS", "a request's commands in `serve`, at most",
            60.0, kind="seconds"),
    Setting("app_port", "DATABRICKS_APP_PORT", "port `serve` listens on without --port (Databricks Apps set "
            "it)", 8000, kind="port"),
    Setting("databricks_app_name", "DATABRICKS_APP_NAME", "set by Databricks Apps: `serve` runs as the app, "
            "behind the platform's authenticating proxy"),
    # Local Spark.
    Setting("spark_driver_memory", "CQRS_SPARK_DRIVER_MEMORY", "heap of a local Spark driver (4g, 1536m)",
            "4g", kind="memory"),
    Setting("jars_dir", "CQRS_JARS_DIR", "folder of the Delta and Kafka jars for local Spark (fetched there "
            "once; for an offline machine, put them there)", kind="path",
            default_doc="~/.cache/cqrs-orders/jars/spark-X-delta-Y"),
    # Secrets: from the environment, else the secret scope (key: scope_key(env)). Never options.
    Setting("eventhub_send_connection", EVENTHUB_SEND_CONNECTION, "Event Hubs connection with the Send right "
            "(the relay, the ingest job)", secret=True),
    Setting("eventhub_listen_connection", EVENTHUB_LISTEN_CONNECTION, "Event Hubs connection with the Listen "
            "right (the projection, the lag monitor)", secret=True),
    Setting("eventhub_connection", EVENTHUB_CONNECTION, "one connection with both rights, read when the "
            "role's own is absent (a laptop); the bundle hands it to nobody", secret=True),
    Setting("cosmos_key", COSMOS_KEY, "Cosmos DB account key", secret=True),
    Setting("alert_webhook_url", ALERT_WEBHOOK_URL, "Teams/Slack webhook the lag monitor posts a breach "
            "to (optional)", secret=True),
)
# fmt: on
#: The settings by field name (secrets excluded: they are looked up on demand, :meth:`Settings.secret`).
PLAIN = {s.name: s for s in SETTINGS if not s.secret}
#: The settings a command line may override (see ``Settings.from_env``), by environment variable.
OVERRIDABLE = tuple(s.env for s in SETTINGS if s.flag)


def value_of(name: str, env: Mapping[str, str] | None = None):
    """One setting read from the environment (default: this process's), for the few places that need a
    process-wide one where no :class:`Settings` is at hand (the local Spark session, its jar cache)."""
    setting = PLAIN[name]
    return setting.parse((os.environ if env is None else env).get(setting.env))


def prepare_local_spark() -> None:
    """Default ``SPARK_LOCAL_IP`` for the JVM a local session launches (it inherits this process's
    environment): 127.0.0.1, so Spark does not warn that the host name resolves to a loopback address."""
    os.environ.setdefault(SPARK_LOCAL_IP_ENV, "127.0.0.1")


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


def running_on_databricks(env: Mapping[str, str] | None = None) -> bool:
    """On Databricks compute (``env``: default this process's environment)."""
    return RUNTIME_VERSION_ENV in (os.environ if env is None else env)


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
    scope = env.get(PLAIN["secret_scope"].env)
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
    """Where things live and which adapters run: one field per setting of :data:`SETTINGS` (its
    declaration holds the default and the documentation). Build it with :meth:`from_env`."""

    warehouse: Path
    catalog: str | None
    schema: str | None
    checkpoint_root: str | None
    write_store: WriteStoreKind
    command_id_retention_days: int
    publisher: PublisherKind
    source: SourceKind
    max_records_per_batch: int
    cosmos_endpoint: str | None
    cosmos_database: str
    cosmos_container: str
    kafka_topic: str
    kafka_bootstrap_servers: str | None
    secret_scope: str | None
    sql_warehouse_id: str | None
    relay: RelayMode
    caller_identity: CallerIdentity
    read_timeout_seconds: float
    write_timeout_seconds: float
    app_port: int
    databricks_app_name: str | None
    spark_driver_memory: str
    jars_dir: str | None
    #: The environment the settings were read from, with the overrides applied: where secrets are looked up.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    #: Fixed, not settings: the embedded event log's partitions (its files' layout: changing it would need
    #: a rewrite of the log) and how far gold may trail silver while streaming.
    event_log_partitions: ClassVar[int] = 4
    gold_refresh_seconds: ClassVar[float] = 30.0

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
        (``{"CQRS_CATALOG": "main"}``); a ``None`` value means "not given", an empty one is refused (it
        would silently mean the default). They win over the environment and go through the same
        validation, so a flag and its variable can never mean different things.
        """
        env = dict(os.environ if env is None else env)
        overrides = dict(overrides or {})
        if warehouse is not None:
            overrides[PLAIN["warehouse"].env] = str(warehouse)
        unknown = set(overrides) - set(OVERRIDABLE)
        if unknown:
            raise ConfigurationError(f"Not a setting: {', '.join(sorted(unknown))}.")
        for setting in SETTINGS:
            if setting.env in overrides and overrides[setting.env] is not None:
                if not overrides[setting.env].strip():
                    default = setting.default_doc or setting.default
                    raise ConfigurationError(
                        f"{setting.flag} is empty; pass a value, or leave the option out for "
                        f"${setting.env} or the default ({default})."
                    )
                env[setting.env] = overrides[setting.env]
        values = {name: setting.parse(env.get(setting.env)) for name, setting in PLAIN.items()}
        root = Path(values.pop("warehouse")).expanduser().resolve()
        if not running_on_databricks(env):  # there tables live in Unity Catalog; the folder may be unused
            _check_warehouse(root)
        if bool(values["catalog"]) != bool(values["schema"]):
            raise ConfigurationError("Set both CQRS_CATALOG and CQRS_SCHEMA (Unity Catalog), or neither.")
        if values["caller_identity"] is None:  # a Databricks App's callers are vouched for by its proxy
            values["caller_identity"] = "required" if values["databricks_app_name"] else "optional"
        return cls(warehouse=root, **values, env=env)

    def secret(self, key: str) -> Secret | None:
        return read_secret(key, self.env)

    @property
    def as_databricks_app(self) -> bool:
        """Run by Databricks Apps: requests come through the platform's authenticating proxy."""
        return bool(self.databricks_app_name)

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
    fix = "pass a folder you can write to as --warehouse (or CQRS_WAREHOUSE); it is created if missing"
    if not os.path.isdir(existing):
        where = "" if existing == root else f" ({existing} is a file)"
        raise ConfigurationError(f"The warehouse {root} is not a directory{where}; {fix}.")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == root else f" ({existing} takes no new folders)"
        raise ConfigurationError(f"The warehouse {root} cannot be written by this user{where}; {fix}.")


def positive_seconds(text: str | float) -> float:
    """A finite number of seconds above 0; ``ValueError`` otherwise (``nan`` and ``inf`` too:
    one would make a wait loop spin, the other overflows every timer it reaches)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{text!r} is not a positive, finite number of seconds")
    return value


#: The command that writes docs/configuration.md (a test fails, naming it, when the file is out of date).
DOC_COMMAND = "python -m cqrs_orders.config > docs/configuration.md"


def _default_text(setting: Setting) -> str:
    if setting.default_doc:
        return setting.default_doc
    if setting.default is None:
        return "unset"
    value = setting.default
    return f"{value:g}" if isinstance(value, float) else str(value)


def configuration_doc() -> str:
    """docs/configuration.md, generated from :data:`SETTINGS`: the settings, then the secrets."""
    lines = [
        "# Configuration",
        "",
        f"<!-- Generated from `SETTINGS` in src/cqrs_orders/config.py by `{DOC_COMMAND}`; do not edit. -->",
        "",
        "Every setting is an environment variable. The ones a Databricks job or the command-ingest notebook",
        "passes are also an option of every `cqrs-orders` subcommand (serverless compute has no environment",
        "variables), which wins over the variable; the bundle fills those from the `databricks.yml` variable",
        "named here. An empty variable means the default; an empty option is refused.",
        "",
        "| Environment variable | Option | Bundle variable | Default | What it is |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        if s.secret:
            continue
        what = s.help + (f" (one of: {', '.join(f'`{c}`' for c in s.choices)})" if s.choices else "")
        option = f"`{s.flag}`" if s.flag else ""
        variable = f"`{s.bundle_variable}`" if s.bundle_variable else ""
        lines.append(f"| `{s.env}` | {option} | {variable} | `{_default_text(s)}` | {what} |")
    lines += [
        "",
        "## Secrets",
        "",
        "Never options and never logged: each is read from its environment variable, else from the",
        'Databricks secret scope `CQRS_SECRET_SCOPE` under its key (docs/operations.md, "Which secret is',
        'used for what").',
        "",
        "| Environment variable | Secret-scope key | What it is |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{s.env}` | `{scope_key(s.env)}` | {s.help} |" for s in SETTINGS if s.secret]
    lines += [
        "",
        "## Read, never set by you",
        "",
        f"- `{RUNTIME_VERSION_ENV}`: set on Databricks compute; its presence means tables live in Unity",
        "  Catalog and the session is Databricks' own.",
        f"- `{SPARK_LOCAL_IP_ENV}`: Spark's own; a local session sets it to `127.0.0.1` when unset.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(configuration_doc())
