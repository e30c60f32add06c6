"""What the bundle deploys, run as one flow: a command accepted by the deployed app reaches bronze, silver,
the views and the app's own GET, through nothing but the resources the bundle declares.

The real Databricks CLI deploys prod (twice: the second deploy ships the app's code) to the fake workspace,
and what the workspace then holds is started the way the platform would start it: each job task's entry
point with the parameters ``jobs get`` shows (a job parameter at its default), the command-ingest notebook
with its base parameters as widgets, the app's ``command`` with its ``env_vars``, each ``value_from``
resolved from the app's resources (the warehouse id; secrets from the workspace's secret scope, put there
with the CLI). Each task is a process of its own, as on Databricks. The stand-ins, all on loopback:

- Unity Catalog: a Hive metastore service shared by every Spark process (``metastore.py``), so
  ``spark_catalog.cqrs_orders.<table>`` means the same table in each; the bundle's ``catalog`` variable is
  set to ``spark_catalog`` and the schema's location is a local folder. ``/Volumes/`` paths map to a folder.
- Cosmos DB: the in-memory account of the command-side tests behind HTTP (``cosmos_server.py``); the
  account endpoint the bundle names maps to it.
- Event Hubs: the suite's Kafka broker in place of the namespace's Kafka endpoint. The secret scope holds
  no ``eventhub-send-connection`` or ``eventhub-listen-connection`` (their endpoint would be SASL_SSL on
  port 9093), so every process is given ``KAFKA_BOOTSTRAP_SERVERS`` instead: the one setting the stand-in
  needs.
- The SQL warehouse: the statement-execution stand-in over the schema's Delta folders.

Two app instances run; the first holds the relay lease. It is killed (SIGKILL, no release) mid-flow, the
second takes over when the lease expires, and silver must still equal the write store. Every job task and
app the bundle declares must have been started by the flow: a resource added later fails this test until
the flow exercises it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cqrs_orders.adapters.cosmos_store import LEASE_SECONDS

pytestmark = [pytest.mark.databricks_cli, pytest.mark.kafka, pytest.mark.timeout(1800)]

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CATALOG = "spark_catalog"  # the stand-in metastore's catalog, passed as the bundle's `catalog` variable
JOB_PARAMETER = "{{job.parameters.%s}}"


def _sibling(folder: str, name: str):
    # Test folders are not packages (pytest's importlib mode): load a helper module by path.
    path = Path(__file__).parents[1] / folder / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"flow_{folder}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


broker = _sibling("kafka", "broker")
cosmos_fake = _sibling("command_side", "cosmos_fake")
cosmos_server = _sibling("command_side", "cosmos_server")
statements = _sibling("read_side", "statement_server")
metastore = _sibling("bundle", "metastore")


def wait_for(check, what: str, timeout: float, every: float = 1.0):
    """``check()``'s first truthy answer within ``timeout`` seconds, or a failure naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Platform:
    """Starts what the workspace holds, as Databricks would, against the stand-ins; remembers what it
    started. ``mapping`` turns the deployed cloud addresses into the stand-ins' (the only rewriting)."""

    def __init__(self, folder: Path, env: dict[str, str], mapping: dict[str, str], bundle: Path):
        self.folder, self.env, self.mapping, self.bundle = folder, env, mapping, bundle
        self.started: set[tuple[str, str]] = set()
        self.processes: list[subprocess.Popen] = []

    def mapped(self, text: str) -> str:
        for cloud, local in self.mapping.items():
            text = text.replace(cloud, local)
        assert "${" not in text and "{{" not in text, f"an unresolved reference was deployed: {text}"
        return text

    def task(self, job_key: str, job: dict, task: dict, parameters: dict | None = None):
        """``(argv, env)`` of one job task, a run's job parameters at their defaults unless given."""
        values = {p["name"]: p["default"] for p in job.get("parameters", [])} | (parameters or {})

        def resolve(text: str) -> str:
            for name, value in values.items():
                text = text.replace(JOB_PARAMETER % name, value)
            return self.mapped(text)

        self.started.add((job_key, task["task_key"]))
        if "python_wheel_task" in task:
            wheel = task["python_wheel_task"]
            assert wheel["package_name"] == "cqrs_orders"
            argv = [str(BIN / wheel["entry_point"]), *map(resolve, wheel["parameters"])]
            return argv, dict(self.env)
        notebook = task["notebook_task"]
        path = notebook["notebook_path"].split("/files/", 1)[1] + ".py"  # the synced bundle file
        widgets = {**notebook.get("base_parameters", {}), **values}
        # The wheel the notebook would install is the one this environment already runs.
        widgets["wheel_dir"] = ""
        env = dict(self.env) | {f"CQRS_WIDGET_{k.upper()}": resolve(v) for k, v in widgets.items()}
        return [sys.executable, str(self.bundle / path)], env

    def app(self, app: dict, secret, port: int):
        """``(argv, env)`` of the app's active deployment, listening on ``port``."""
        deployment = app["active_deployment"]
        resources = {resource["name"]: resource for resource in app["resources"]}

        def value(variable: dict) -> str:
            if "value" in variable:
                return self.mapped(variable["value"])
            resource = resources[variable["value_from"]]
            if "sql_warehouse" in resource:
                return resource["sql_warehouse"]["id"]
            return secret(resource["secret"]["scope"], resource["secret"]["key"]) or ""

        env = dict(self.env) | {v["name"]: value(v) for v in deployment["env_vars"]}
        env["DATABRICKS_APP_PORT"] = str(port)  # what the platform hands every app
        env["DATABRICKS_APP_NAME"] = app["name"]
        self.started.add(("app", app["name"]))
        argv = [str(BIN / deployment["command"][0]), *map(self.mapped, deployment["command"][1:])]
        return argv, env

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        process = subprocess.Popen(argv, env=env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT)
        process.log_path = self.folder / f"{name}.log"
        self.processes.append(process)
        return process

    def run(self, name: str, argv: list[str], env: dict, timeout: float = 300) -> tuple[int, str]:
        process = self.start(name, argv, env)
        code = process.wait(timeout)
        return code, process.log_path.read_text()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def deployed(flow_cli, names):
    """The jobs (``jobs get``) and the app (``apps get``) after two prod deploys on ``spark_catalog``."""
    variables = [*names["prod_vars"], f"--var=catalog={CATALOG}"]
    for _ in range(2):  # the second deploy ships the app's code (its active deployment)
        flow_cli("bundle", "deploy", "--target", "prod", *variables)
    jobs = {}
    for listed in flow_cli("jobs", "list", "--output", "json").json():
        settings = flow_cli("jobs", "get", str(listed["job_id"]), "--output", "json").json()["settings"]
        jobs[settings["name"].removeprefix("cqrs_orders_")] = settings
    resolved = flow_cli("bundle", "validate", "--output", "json", "--target", "prod", *variables).json()
    [app] = resolved["resources"]["apps"].values()  # the fake workspace cannot list apps: get it by name
    return jobs, flow_cli("apps", "get", app["name"], "--output", "json").json()


#: The caller the Databricks Apps proxy signs in and names in its X-Forwarded-* headers.
CALLER = "shop-frontend@example.com"


def post(base: str, command: dict) -> dict:
    """POST a command as it arrives through the Apps proxy: with the signed-in caller's headers."""
    headers = {"X-Forwarded-Email": CALLER, "X-Forwarded-User": "4242"}
    answer = httpx.post(f"{base}/commands", json=command, headers=headers, timeout=30)
    assert answer.status_code in (200, 201), answer.text
    assert answer.json()["status"] == "accepted", answer.text
    return answer.json()


def test_a_command_travels_through_what_the_bundle_deploys(deployed, flow_cli, tmp_path_factory):
    jobs, app = deployed
    folder = tmp_path_factory.mktemp("flow")
    schema = next(j for j in jobs.values() if "python_wheel_task" in j["tasks"][0])["tasks"][0]
    schema_name = next(
        p.split("=", 1)[1] for p in schema["python_wheel_task"]["parameters"] if p.startswith("--schema=")
    )
    (folder / "kafka").mkdir()
    account = cosmos_fake.FakeCosmosAccount()
    started_at = time.monotonic()
    with (
        metastore.running_metastore(folder / "metastore") as catalog,
        broker.running_broker(folder / "kafka") as bootstrap,
        cosmos_server.CosmosServer(account) as cosmos,
    ):
        _create_topic(bootstrap, jobs)
        flow_cli("secrets", "create-scope", "cqrs-orders")
        flow_cli(
            "secrets", "put-secret", "cqrs-orders", "cosmos-key", "--string-value", cosmos_fake.COSMOS_KEY
        )
        tables = folder / "uc" / schema_name
        env = {
            "PATH": os.pathsep.join([str(BIN), "/usr/bin", "/bin"]),
            "HOME": os.environ.get("HOME", str(folder)),  # the Spark and Kafka jars cached there
            "SPARK_CONF_DIR": str(catalog.spark_conf_dir()),
            "DATABRICKS_HOST": flow_cli.workspace.url,
            "DATABRICKS_TOKEN": flow_cli.env["DATABRICKS_TOKEN"],
            "DATABRICKS_CONFIG_FILE": str(folder / "no.databrickscfg"),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,  # the Event Hubs Kafka endpoint's stand-in
        }
        platform = Platform(
            folder,
            env,
            {
                "https://cosmos-orders-test.documents.azure.com:443/": cosmos.url,
                "/Volumes/": f"{folder}/Volumes/",
            },
            flow_cli.bundle,
        )
        code, out = platform.run(
            "create-schema",
            [sys.executable, "-c", _CREATE_SCHEMA, f"{CATALOG}.{schema_name}", str(tables)],
            env,
        )
        assert code == 0, out  # what the bundle's schema resource is in Unity Catalog
        warehouse = statements.StatementServer(statements.delta_engine(tables)).start()
        try:
            _flow(platform, jobs, app, account, warehouse, tables, flow_cli)
        finally:
            platform.stop_all()
            warehouse.stop()
    declared = {(key, task["task_key"]) for key, job in jobs.items() for task in job["tasks"]}
    assert platform.started == declared | {("app", app["name"])}
    logger.info("the flow took %.0f s", time.monotonic() - started_at)


_CREATE_SCHEMA = (
    "import sys; from cqrs_orders.spark import get_spark; "
    "get_spark('uc').sql(f\"CREATE SCHEMA IF NOT EXISTS {sys.argv[1]} LOCATION '{sys.argv[2]}'\")"
)


def _create_topic(bootstrap: str, jobs: dict) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    [topic] = {
        p.split("=", 1)[1] for p in jobs["projection"]["tasks"][0]["python_wheel_task"]["parameters"]
        if p.startswith("--eventhub-name=")
    }  # fmt: skip
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        admin.close()


def _flow(platform: Platform, jobs, app, account, warehouse, tables: Path, flow_cli) -> None:
    def secret(scope: str, key: str) -> str | None:
        answer = flow_cli("secrets", "get-secret", scope, key, "--output", "json", check=False)
        if answer.code != 0:
            return None
        import base64

        return base64.b64decode(answer.json()["value"]).decode()

    [projection] = jobs["projection"]["tasks"]
    argv, env = platform.task("projection", jobs["projection"], projection)
    streaming = platform.start("projection", argv, env)

    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    argv, env = platform.app(app, secret, ports[0])
    holder = platform.start("app-1", argv, _app_host(env, warehouse))
    wait_for(lambda: _answers(bases[0]), "the first app instance to listen", 90)

    customer, order = "cust-flow", "order-flow"
    register = {"type": "RegisterCustomer", "customerId": customer, "name": "Ada", "email": "a@b.io"}
    bypass = httpx.post(f"{bases[0]}/commands", json=register, timeout=30)  # not through the proxy
    assert (bypass.status_code, bypass.json()["error"]["code"]) == (401, "UNAUTHENTICATED"), bypass.text
    post(bases[0], register | {"metadata": {"userId": "someone-else"}})
    item = {"sku": "sku-1", "quantity": 2, "unitPrice": "12.50"}
    post(bases[0], {"type": "CreateOrder", "orderId": order, "customerId": customer, "items": [item]})
    wait_for(lambda: _lease(account), "the first instance's relay to take the lease", 60)

    argv, env = platform.app(app, secret, ports[1])
    standby = platform.start("app-2", argv, _app_host(env, warehouse))
    wait_for(lambda: _answers(bases[1]), "the second app instance to listen", 90)
    post(
        bases[1],
        {"type": "AddOrderItem", "orderId": order, "sku": "sku-2", "quantity": 1, "unitPrice": "0.99"},
    )
    first_holder = _lease(account)["holder"]

    holder.send_signal(signal.SIGKILL)  # the relay holder dies without releasing its lease
    killed_at = time.monotonic()
    holder.wait(10)
    for step in ("ConfirmOrder", "ShipOrder", "DeliverOrder"):
        post(bases[1], {"type": step, "orderId": order})
    wait_for(
        lambda: (_lease(account) or {}).get("holder") not in (None, first_holder),
        "the standby to take the relay lease over",
        120,
    )
    takeover = time.monotonic() - killed_at
    logger.info("relay takeover after the holder died: %.1f s", takeover)

    delivered = wait_for(
        lambda: _order(bases[1], order, "Delivered"), "the order at its last version through the app", 300, 2
    )
    assert delivered["totalAmount"] in ("25.99", 25.99)
    assert delivered["customerName"] == "Ada"

    [ingest] = jobs["command_ingest"]["tasks"]
    command = {"type": "CancelOrder", "orderId": "order-ingest", "reason": "x"}
    create = {"type": "CreateOrder", "orderId": "order-ingest", "customerId": customer, "items": [item]}
    # The commands travel as a file in the bundle's command_inbox volume; the run is given only its path.
    command_file = f"/Volumes/{CATALOG}/{tables.name}/command_inbox/flow-batch.json"
    uploaded = Path(platform.mapped(command_file))
    uploaded.parent.mkdir(parents=True, exist_ok=True)
    uploaded.write_text(json.dumps([create, command]))
    argv, env = platform.task(
        "command_ingest", jobs["command_ingest"], ingest, {"command_file": command_file}
    )
    code, out = platform.run("command_ingest", argv, env)
    assert code == 0, out
    assert not uploaded.exists()  # answered: the file with the commands is gone
    assert [r["status"] for r in json.loads(out.strip().splitlines()[-1])] == ["accepted", "accepted"], out
    wait_for(
        lambda: _order(bases[1], "order-ingest", "Cancelled"), "the ingested order through the app", 300, 2
    )

    for key in ("lag_monitor", "views", "maintenance", "quarantine"):
        for task in jobs[key]["tasks"]:
            argv, env = platform.task(key, jobs[key], task)
            code, out = platform.run(f"{key}-{task['task_key']}", argv, env)
            assert code == 0, f"{key}.{task['task_key']} exited {code}:\n{out}"
    # An operator erases the customer: Cosmos DB and the lake read the marker; the orders stay.
    [erase] = jobs["erase_customer"]["tasks"]
    given = {"customer_id": customer, "reason": "flow: ticket 1"}
    argv, env = platform.task("erase_customer", jobs["erase_customer"], erase, given)
    code, out = platform.run("erase_customer-erase", argv, env)
    assert code == 0, f"erase_customer exited {code}:\n{out}"
    from deltalake import DeltaTable

    # An operator rebuilds the read models while the continuous projection runs: the rebuild job pauses it
    # through the checkpoints volume, checks the new generation against bronze, publishes, and resumes it.
    [rebuild] = jobs["rebuild"]["tasks"]
    argv, env = platform.task("rebuild", jobs["rebuild"], rebuild)
    code, out = platform.run("rebuild-rebuild", argv, env)
    assert code == 0, f"rebuild exited {code}:\n{out}"
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["silver_orders"] == len(_order_states(account)), summary
    assert set(summary["published_versions"]) == set(summary["previous_versions"]), summary

    customers = DeltaTable(str(tables / "silver_customers")).to_pyarrow_table().to_pylist()
    erased = [(r["customer_name"], r["email"]) for r in customers if r["customer_id"] == customer]
    assert erased == [("[erased]", "[erased]")]  # the rebuild read the masked bronze
    [state] = [
        d for d in account.documents.values() if d.get("docType") == "state" and d["aggregateId"] == customer
    ]
    assert (state["state"]["name"], state["erasure"]["reason"]) == ("[erased]", "flow: ticket 1")

    assert streaming.poll() is None, streaming.log_path.read_text()  # the continuous task still runs
    assert standby.poll() is None, standby.log_path.read_text()
    _silver_equals_the_write_store(account, tables)
    _events_record_the_caller_the_platform_vouched_for(account)
    assert takeover <= LEASE_SECONDS + 5  # the documented bound: the lease's expiry plus a standby's poll


def _app_host(env: dict, warehouse) -> dict:
    """The app's workspace host is where its SQL warehouse answers (the platform injects the host)."""
    return env | {"DATABRICKS_HOST": warehouse.url}


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _lease(account) -> dict | None:
    leases = [d for (_, doc_id), d in account.documents.items() if doc_id.startswith("lease-")]
    return leases[0] if leases else None


def _order(base: str, order_id: str, status: str) -> dict | None:
    answer = httpx.get(f"{base}/orders/{order_id}", timeout=30)
    if answer.status_code != 200:
        return None
    order = answer.json()["order"]
    return order if order["status"] == status else None


def _events_record_the_caller_the_platform_vouched_for(account) -> None:
    """Every event the app accepted names the proxy's caller; a body's own claim is kept apart."""
    metadata = {
        doc["eventId"]: json.loads(doc["body"])["metadata"]
        for doc in account.documents.values()
        if doc.get("docType") == "event" and doc["aggregateId"] != "order-ingest"  # the job's run-as identity
    }
    assert metadata and {(m["userId"], m["authenticatedBy"]) for m in metadata.values()} == {
        (CALLER, "databricks-apps")
    }
    assert [m.get("claimedUserId") for m in metadata.values()].count("someone-else") == 1


def _order_states(account) -> dict[str, dict]:
    """The write store's order state documents, by order id."""
    return {
        doc["aggregateId"]: doc for doc in account.documents.values()
        if doc.get("docType") == "state" and doc["aggregateType"] == "Order"
    }  # fmt: skip


def _silver_equals_the_write_store(account, tables: Path) -> None:
    """Bronze holds every event the write store accepted; silver holds each order once, at the version and
    status the write store holds."""
    from deltalake import DeltaTable

    states = _order_states(account)
    accepted = {doc["eventId"] for doc in account.documents.values() if doc.get("docType") == "event"}
    bronze = DeltaTable(str(tables / "bronze_events")).to_pyarrow_table(columns=["event_id"])
    assert set(bronze.column("event_id").to_pylist()) == accepted  # every accepted event, and no other
    quarantined = DeltaTable(str(tables / "bronze_quarantine")).to_pyarrow_table()
    assert quarantined.num_rows == 0
    silver = DeltaTable(str(tables / "silver_orders")).to_pyarrow_table().to_pylist()
    assert sorted(row["order_id"] for row in silver) == sorted(states)  # once each, none missing
    for row in silver:
        state = states[row["order_id"]]
        assert (row["version"], row["status"]) == (state["version"], state["state"]["status"]), row
