"""``erase-customer`` end to end, on the real parts: a customer with distinctive strings is written,
published, projected and maintained; erased with the retention the test allows (Delta's retention check
off, ``--retain-hours 0``); then every file under the warehouse is searched: Parquet read with pyarrow
(data and ``_delta_log`` checkpoints), the Delta JSON commits, the SQLite store's pages and WAL, the event
log, the streaming checkpoints. None holds the strings, the orders are still counted, and neither a replay
of the old event from the bus nor a rebuild brings the customer back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import functions as F

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.application.erasure import MARKER, mask_personal
from cqrs_orders.delta_io import Table
from cqrs_orders.pipeline.erasure import PERSONAL_COLUMNS, RETENTION_CHECK_CONF, mask_body
from cqrs_orders.pipeline.tables import SCHEMAS
from cqrs_orders.spark import get_spark

log = logging.getLogger(__name__)

CUSTOMER = "cust-erase-1"
NAME, RENAMED, EMAIL = "Ottoline Vrakspeare", "Otti Vrakspeare-Lund", "ottoline.vrak@example.test"
#: What must be found nowhere after the erasure (parts too: a truncated statistic would hold a prefix).
SEARCHED = (NAME, RENAMED, EMAIL, "Vrakspeare", "vrakspeare", "ottoline.vrak")


def files_holding(root: Path, values=SEARCHED, skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Per file under ``root`` that holds any of ``values``, which ones. A Parquet file is read with
    pyarrow (its pages are compressed, so bytes would not show a value) and as bytes (its footer's
    statistics); every other file (Delta JSON commits and checksums, SQLite pages and WAL, streaming
    offsets) as bytes."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = str(path.relative_to(root))
        if relative.startswith(skip):
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if path.suffix == ".parquet":
            text += json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
        holding = [value for value in values if value in text]
        if holding:
            found[relative] = holding
    return found


#: Columns named like personal ones that hold none: each with why.
NOT_PERSONAL = {("ops_stream_progress", "query_name")}  # the streaming query's name ("projection")


def test_every_table_with_a_personal_column_is_erased():
    """A column that may hold a name, an e-mail or a whole body is in PERSONAL_COLUMNS, or the erasure
    would leave it behind."""
    personal = {
        (table, field.name)
        for table, schema in SCHEMAS.items()
        for field in schema.fields
        if (field.name in ("body", "email") or "name" in field.name)
        and (table, field.name) not in NOT_PERSONAL
    }
    assert personal == {(t, c) for t, columns in PERSONAL_COLUMNS.items() for c in columns}


def test_spark_masks_a_body_exactly_as_python_does(spark):
    """One rule in two engines: the micro-batch's mask (Spark) and the rewrite's (Python) agree."""
    bodies = [
        json.dumps({"aggregateId": "c", "data": {"name": NAME, "email": EMAIL, "sku": "x"}}),
        '{"data": {"name" : "A \\"quoted\\" \\\\ name", "email":"\\u0061@b.c"}}',
        'broken "name":"Half',
        '{"name":"[erased]","username":"kept"}',
    ]
    masked = [
        row[0]
        for row in spark.createDataFrame([(b,) for b in bodies], "b string")
        .select(mask_body(F.col("b")))
        .collect()
    ]
    assert masked == [mask_personal(body) for body in bodies]


def erase(cli, *args: str):
    """``erase-customer ARGS --retain-hours 0``, with what the test allows: VACUUM with no retention, which
    Delta refuses unless its check is off in the session the command uses (the CLI's active one)."""
    session = get_spark()
    before = session.conf.get(RETENTION_CHECK_CONF, "true")
    session.conf.set(RETENTION_CHECK_CONF, "false")
    try:
        return cli("erase-customer", *args, "--retain-hours", "0")
    finally:
        session.conf.set(RETENTION_CHECK_CONF, before)


def submit(cli, command: dict) -> dict:
    result = cli("submit", json.dumps(command))
    return result.json_lines()[0]


def test_an_erased_customer_is_unreadable_in_every_file_and_stays_erased(spark, cli, settings):
    warehouse = settings.warehouse
    assert (
        submit(cli, {"type": "RegisterCustomer", "customerId": CUSTOMER, "name": NAME, "email": EMAIL})[
            "status"
        ]
        == "accepted"
    )
    assert (
        submit(cli, {"type": "UpdateCustomer", "customerId": CUSTOMER, "name": RENAMED})["status"]
        == "accepted"
    )
    submit(
        cli,
        {"type": "RegisterCustomer", "customerId": "cust-kept", "name": "Kept Person", "email": "k@x.test"},
    )
    for order in ("ord-e1", "ord-e2"):
        created = {"type": "CreateOrder", "orderId": order, "customerId": CUSTOMER,
                   "items": [{"sku": "sku-1", "quantity": 2, "unitPrice": "9.50"}]}  # fmt: skip
        assert submit(cli, created)["status"] == "accepted"
    assert submit(cli, {"type": "ConfirmOrder", "orderId": "ord-e1"})["status"] == "accepted"
    assert cli("relay").exit_code == 0
    log_path = settings.event_log_path
    original = next(
        body for body in EventLog(log_path).read().column("body").to_pylist() if f'"name":"{NAME}"' in body
    )
    # Two broken records of the customer land in the quarantine: one naming it, one naming nothing.
    broken = original.replace('"version":1', '"version":"one"')
    (warehouse.parent / "broken.jsonl").write_text(f"{broken}\nnot json at all: {NAME} <{EMAIL}>\n")
    assert cli("ingest-events", "--file", str(warehouse.parent / "broken.jsonl")).exit_code == 0
    assert cli("project", "--once").exit_code == 0
    assert cli("maintain").exit_code == 0
    quarantined = Table(settings.table("bronze_quarantine")).read(spark).count()
    assert quarantined == 2
    holding = {name.split("/")[0] for name in files_holding(warehouse)}
    assert holding >= {
        "write_store.sqlite",
        "event_log",
        "bronze_events",
        "bronze_quarantine",
        "silver_customers",
    }

    erased = erase(cli, CUSTOMER, "--reason", "ticket GDPR-7")

    assert erased.exit_code == 0, erased.stderr
    summary = erased.json_lines()[-1]
    log.warning("erase-customer took %.2f s: %s", summary["seconds"], summary)
    assert summary["writeStore"] == {"events": 2, "commands": 2}
    assert summary["lake"]["rewritten"]["bronze_events"] >= 2
    assert summary["lake"]["rewritten"]["bronze_quarantine"] == 2
    assert files_holding(warehouse) == {}

    # Orders stay countable; the customer reads as the marker wherever it is shown.
    orders = Table(settings.table("silver_orders")).read(spark).where(F.col("customer_id") == CUSTOMER)
    assert sorted((r["order_id"], r["status"], str(r["total_amount"])) for r in orders.collect()) == [
        ("ord-e1", "Confirmed", "19.00"),
        ("ord-e2", "Created", "19.00"),
    ]
    customer = (
        Table(settings.table("silver_customers")).read(spark).where(F.col("customer_id") == CUSTOMER).first()
    )
    assert (customer["customer_name"], customer["email"], customer["version"]) == (MARKER, MARKER, 2)
    kept = (
        Table(settings.table("silver_customers"))
        .read(spark)
        .where(F.col("customer_id") == "cust-kept")
        .first()
    )
    assert kept["customer_name"] == "Kept Person"
    registry = Table(settings.table("ops_erasures")).read(spark).collect()
    assert [(r["customer_id"], r["reason"]) for r in registry] == [(CUSTOMER, "ticket GDPR-7")]

    # The bus gives the old event again (a republish; Event Hubs within its retention): it lands masked.
    EventLog(log_path).append([(CUSTOMER, original)])
    assert cli("project", "--once").exit_code == 0
    assert files_holding(warehouse, skip=("event_log",)) == {}
    # A rebuild reads bronze, which holds the customer masked.
    assert cli("rebuild").exit_code == 0
    customer = (
        Table(settings.table("silver_customers")).read(spark).where(F.col("customer_id") == CUSTOMER).first()
    )
    assert (customer["customer_name"], customer["email"]) == (MARKER, MARKER)
    # The command side refuses to write the customer again.
    again = submit(cli, {"type": "RegisterCustomer", "customerId": CUSTOMER, "name": NAME, "email": EMAIL})
    assert (again["status"], again["error"]["code"]) == ("rejected", "ALREADY_EXISTS")
    renamed = submit(cli, {"type": "UpdateCustomer", "customerId": CUSTOMER, "name": NAME})
    assert (renamed["status"], renamed["error"]["code"]) == ("rejected", "CUSTOMER_ERASED")
    # The replayed copy on the embedded bus goes with the next run of the erasure (idempotent).
    assert files_holding(warehouse) != {}
    again = erase(cli, CUSTOMER, "--reason", "ticket GDPR-7, bus replay")
    assert again.exit_code == 0, again.stderr
    assert again.json_lines()[-1]["alreadyErased"] is True
    assert files_holding(warehouse) == {}
    assert (
        Table(settings.table("silver_orders")).read(spark).where(F.col("customer_id") == CUSTOMER).count()
        == 2
    )


def test_a_short_retention_is_refused_while_deltas_check_is_on(spark, cli):
    """Without the test's switch, a retention under 7 days is refused before anything is erased."""
    submit(
        cli, {"type": "RegisterCustomer", "customerId": "cust-r", "name": "Ruth Quell", "email": "r@q.test"}
    )
    refused = cli("erase-customer", "cust-r", "--reason", "ticket", "--retain-hours", "1")
    assert refused.exit_code == 2 and "Refusing to VACUUM" in refused.stderr
    assert (
        submit(cli, {"type": "UpdateCustomer", "customerId": "cust-r", "name": "Ruth Q."})["status"]
        == "accepted"
    )
