"""A real, single-node Kafka broker for the tests, run from Kafka's own jars.

The jars come from Maven Central through ``mvn dependency:copy-dependencies`` (the same route as Spark's
jars in :mod:`cqrs_orders.jars`) and are cached under ``~/.cache/cqrs-orders/kafka-jars/<version>``, so a
fresh machine needs only Python, Java 17 and Maven. The broker runs in KRaft mode (one process is both
broker and controller) with a plaintext listener on a free loopback port.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cqrs_orders.errors import SparkUnavailableError
from cqrs_orders.jars import copy_with_maven

KAFKA_VERSION = "4.1.1"
_COORDINATES = [f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}"]
_MARKER = ".complete"
_START_TIMEOUT_SECONDS = 120


class BrokerUnavailable(RuntimeError):
    """The broker could not be fetched or started; the message says why and what to do."""


def jar_dir() -> Path:
    return Path.home() / ".cache" / "cqrs-orders" / "kafka-jars" / KAFKA_VERSION


def fetch_jars() -> Path:
    """The folder holding Kafka's jars, fetched with Maven on first use."""
    folder = jar_dir()
    if (folder / _MARKER).exists():
        return folder
    print(
        f"Fetching Kafka {KAFKA_VERSION} jars with Maven into {folder} (first run only)...", file=sys.stderr
    )
    folder.mkdir(parents=True, exist_ok=True)
    try:
        copy_with_maven(_COORDINATES, folder)
    except SparkUnavailableError as error:
        raise BrokerUnavailable(
            f"{error} (for {_COORDINATES[0]}). Check that Maven can reach Maven Central, "
            "or set CQRS_SKIP_KAFKA=1 to skip the Kafka tests."
        ) from None
    (folder / _MARKER).write_text("\n".join(_COORDINATES) + "\n")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def _java(jars: Path, *args: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise BrokerUnavailable("Java is not installed; the Kafka broker needs Java 17.")
    # A small heap and one GC thread: the broker shares two cores with Spark during the tests.
    return [java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-cp", f"{jars}/*", *args]


@contextmanager
def running_broker(work_dir: Path) -> Iterator[str]:
    """Start a broker with its data under ``work_dir``; yield ``127.0.0.1:<port>``; kill it afterwards."""
    jars = fetch_jars()
    port, controller_port = free_port(), free_port()
    data = work_dir / "data"
    config = work_dir / "server.properties"
    config.write_text(server_properties(data, port, controller_port))
    cluster_id = _cluster_id()
    formatted = subprocess.run(
        _java(jars, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)),
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if formatted.returncode != 0:
        raise BrokerUnavailable(
            f"Formatting the KRaft storage failed: {_tail(formatted.stdout + formatted.stderr)}"
        )
    log_path = work_dir / "broker.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            _java(jars, "kafka.Kafka", str(config)), stdout=log, stderr=subprocess.STDOUT, cwd=work_dir
        )
    bootstrap = f"127.0.0.1:{port}"
    try:
        _wait_until_ready(process, bootstrap, log_path)
        yield bootstrap
    finally:
        process.kill()
        process.wait(timeout=30)


def _cluster_id() -> str:
    """A KRaft cluster id as Kafka makes one (URL-safe base64 of a random UUID), never starting with "-":
    the storage tool's argument parser would read such an id as an option (as Kafka's own generator knows)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _wait_until_ready(process: subprocess.Popen, bootstrap: str, log_path: Path) -> None:
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BrokerUnavailable(
                f"The Kafka broker exited with code {process.returncode}: {_tail(log_path.read_text())}"
            )
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        except KafkaError:
            time.sleep(0.5)
            continue
        try:
            admin.describe_cluster()
            return
        except KafkaError:
            time.sleep(0.5)
        finally:
            admin.close()
    process.kill()
    raise BrokerUnavailable(
        f"The Kafka broker did not answer on {bootstrap} within {_START_TIMEOUT_SECONDS}s: "
        f"{_tail(log_path.read_text())}"
    )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


if __name__ == "__main__":  # `python tests/kafka/broker.py`: run a broker by hand until Ctrl-C
    with tempfile.TemporaryDirectory(prefix="cqrs-kafka-") as tmp, running_broker(Path(tmp)) as address:
        print(f"Kafka broker ready at {address} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    os._exit(0)
