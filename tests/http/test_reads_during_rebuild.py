"""Reads during a rebuild, while commands keep arriving: every ``GET /orders/{id}`` and every ``cqrs-orders
sql`` answers (no 404, no 5xx, no failure), and silver is exact afterwards.

The real processes: ``serve --relay`` takes the commands and publishes them to the event log, ``project
--continuous`` runs in its own process, and ``rebuild`` runs here (sharing the tests' Spark), pausing that
projection between micro-batches and resuming it. Small data: the point is what a reader can observe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from chispa import assert_df_equality

from cqrs_orders.delta_io import table
from cqrs_orders.pipeline.bronze import to_bronze, validate_records
from cqrs_orders.pipeline.gold import GOLD_TABLE, daily_order_metrics
from cqrs_orders.pipeline.rebuild import build_generation, rebuild
from cqrs_orders.pipeline.runner import STATE_CHECKS

logger = logging.getLogger(__name__)
ITEMS = [{"sku": "SKU-1", "quantity": 2, "unitPrice": 2.5}]
READ_ORDERS = [f"read-{i}" for i in range(5)]


def create(order_id: str) -> dict:
    return {"type": "CreateOrder", "orderId": order_id, "customerId": "reader-cust", "items": ITEMS}


def visible(client, order_ids) -> bool:
    return all(client.get(f"/orders/{order_id}").status_code == 200 for order_id in order_ids)


def wait_until(condition, seconds: float, what: str, log_path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {seconds} s:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.2)


class Loop(threading.Thread):
    """Calls ``once`` until stopped; keeps (seconds, answer) per call."""

    def __init__(self, once, stop: threading.Event):
        super().__init__(daemon=True)
        self.once, self.stop, self.answers = once, stop, []

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            answer = self.once()
            self.answers.append((time.monotonic() - began, answer))


def p99(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] if len(seconds) > 1 else seconds[0]


def test_reads_answer_during_a_rebuild_while_commands_arrive_and_silver_is_exact_after(
    spark, spark_process, settings, served, tmp_path
):
    server = served(settings.warehouse, None, "--relay")
    projection_log = tmp_path / "project.log"
    with projection_log.open("w") as written:
        projection = subprocess.Popen(
            [sys.executable, "-m", "cqrs_orders.cli", "project", "--continuous", "--trigger-seconds", "1",
             "--warehouse", str(settings.warehouse)],
            env={**spark_process, "CQRS_SPARK_DRIVER_MEMORY": "1g"}, stdout=written, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches Spark's JVM too
        )  # fmt: skip
    stop, sent = threading.Event(), []
    try:
        with server.client() as client:
            register = {"type": "RegisterCustomer", "customerId": "reader-cust", "name": "Ada",
                        "email": "ada@example.com"}  # fmt: skip
            answers = client.post("/commands", json=[register, *map(create, READ_ORDERS)]).json()
            assert [a["status"] for a in answers] == ["accepted"] * 6
            projected = lambda: visible(client, READ_ORDERS)  # noqa: E731
            wait_until(projected, 900, "the projection did not project", projection_log)

        def command():
            order_id = f"live-{len(sent)}"
            with server.client() as client:
                answer = client.post("/commands", json=create(order_id))
            sent.append(order_id)
            time.sleep(0.2)
            return answer.status_code

        def get():
            with server.client() as client:
                order_id = READ_ORDERS[len(get_loop.answers) % len(READ_ORDERS)]
                return client.get(f"/orders/{order_id}").status_code

        def sql():
            query = "SELECT count(*) AS n FROM silver_orders WHERE order_id LIKE 'read-%'"
            done = subprocess.run(
                [sys.executable, "-m", "cqrs_orders.cli", "sql", "--json",
                 "--warehouse", str(settings.warehouse), query],
                env=spark_process, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            return done.returncode, json.loads(done.stdout) if done.returncode == 0 else done.stderr

        get_loop = Loop(get, stop)
        loops = [Loop(command, stop), get_loop, Loop(sql, stop)]
        for loop in loops:
            loop.start()
        time.sleep(2)
        began = time.monotonic()
        during = {id(loop): len(loop.answers) for loop in loops}
        summary = rebuild(spark, settings, pause_timeout=120)
        rebuild_seconds = time.monotonic() - began
        windows = {id(loop): (during[id(loop)], len(loop.answers)) for loop in loops}
        time.sleep(3)
        stop.set()
        for loop in loops:
            loop.join(150)

        commands, gets, sqls = (loop.answers for loop in loops)
        assert {answer for _, answer in commands} == {200}
        assert [answer for _, answer in gets if answer != 200] == []  # no 404, no 5xx
        assert sqls and [answer for _, answer in sqls if answer != (0, {"n": 5})] == []
        first, last = windows[id(get_loop)]
        assert last - first >= 3, "too few reads while the rebuild ran"
        during_rebuild = [seconds for seconds, _ in gets[first:last]]
        logger.warning(
            "rebuild %.1f s (its own figure %s s); %d GETs during it, p99 %.3f s; %d sql runs in all",
            rebuild_seconds, summary["seconds"], len(during_rebuild), p99(during_rebuild), len(sqls),
        )  # fmt: skip
        assert "pause requested" in projection_log.read_text()  # the running projection was paused...
        assert "projection resumed" in projection_log.read_text()  # ...and resumed

        with server.client() as client:  # every command sent arrives: the projection carries on
            arrived = lambda: visible(client, sent)  # noqa: E731
            wait_until(arrived, 300, "the live orders were not projected", projection_log)
    finally:
        stop.set()
        if projection.poll() is None:
            projection.send_signal(signal.SIGTERM)  # stops between micro-batches (not the JVM: it would die)
            try:
                projection.wait(120)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(projection.pid, signal.SIGKILL)
                projection.wait()

    log = spark.read.format("delta").load(str(settings.event_log_path))
    validated = validate_records(log, STATE_CHECKS).localCheckpoint()
    bronze = to_bronze(validated, datetime.now(timezone.utc))
    expected = build_generation(bronze)
    expected[GOLD_TABLE] = daily_order_metrics(expected["silver_orders"])
    for name, rows in expected.items():
        rows = rows.drop("projected_at")
        actual = table(settings, name).read(spark)
        actual = actual.drop("projected_at") if "projected_at" in actual.columns else actual
        try:
            assert_df_equality(
                spark.createDataFrame(actual.collect(), actual.schema),
                spark.createDataFrame(rows.collect(), rows.schema),
                ignore_nullable=True,
                ignore_row_order=True,
            )
        except AssertionError as error:
            raise AssertionError(f"{name} is not exact after the rebuild: {error}") from None
    assert table(settings, "silver_orders").read(spark).count() == len(READ_ORDERS) + len(sent)
