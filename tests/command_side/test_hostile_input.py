"""Issue 16's command-side defects: bad input is an error of its own line or field, never of the whole run,
and a damaged write store is refused at open instead of being used."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.errors import WriteStoreError

REGISTER = {"type": "RegisterCustomer", "customerId": "cust-1", "name": "Ada", "email": "ada@example.com"}


def register(n: int) -> bytes:
    return json.dumps({**REGISTER, "commandId": f"c-{n}", "customerId": f"cust-{n}"}).encode()


#: Lines no JSON parser should take down a run with: invalid UTF-8, nesting far past any recursion limit
#: (200 KB, under the 256 KiB size limit), and a lone surrogate escape (valid JSON, not storable text).
HOSTILE_LINES = {
    "invalid UTF-8": b'{"type": "RegisterCustomer", "name": "\xff\xfe"}',
    "deep nesting": b"[" * 200_000,
    "deep object nesting": b'{"a":' * 40_000,
    "lone surrogate": b'{"type": "RegisterCustomer", "customerId": "x\\ud800", "name": "A", '
    b'"email": "a@b.io"}',
}


def submit_bytes(settings, payload: bytes, *, stdin: bool) -> subprocess.CompletedProcess:
    base = [sys.executable, "-m", "cqrs_orders.cli", "submit", "--warehouse", str(settings.warehouse)]
    if stdin:
        return subprocess.run([*base, "--file", "-"], input=payload, capture_output=True, timeout=120)
    path = settings.warehouse.parent / "commands.jsonl"
    path.write_bytes(payload)
    return subprocess.run([*base, "--file", str(path)], capture_output=True, timeout=120)


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_every_line_of_a_file_is_answered_in_order_whatever_it_holds(settings, stdin):
    lines = [register(0)]
    for n, hostile in enumerate(HOSTILE_LINES.values(), start=1):
        lines += [hostile, register(n)]
    done = submit_bytes(settings, b"\n".join(lines) + b"\n", stdin=stdin)
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")[-2000:]
    assert done.returncode == 1  # some lines were rejected; none stopped the run
    results = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(results) == len(lines)
    for n, result in enumerate(results):
        if n % 2 == 0:
            assert (result["status"], result["commandId"]) == ("accepted", f"c-{n // 2}"), result
        else:
            assert result["status"] == "rejected" and result["error"]["code"] == "VALIDATION_ERROR", result
    assert "nested" in results[3]["error"]["message"] and "UTF-8" in results[1]["error"]["message"]
    assert SqliteWriteStore(settings.write_store_path).counts()["commands"] == len(HOSTILE_LINES) + 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Ada\x00Lovelace"),
        ("name", "Ada\u202eecalevoL"),
        ("name", "Ada\ud800"),
        ("customerId", "cust\u200b-1"),
        ("customerId", "cust-\u202e1"),
        ("customerId", "\ufeffcust-1"),
        ("customerId", "cust\u00a0-1"),
        ("customerId", "cust\ud800"),
        ("commandId", "cmd\u2066-1"),
    ],
)
def test_invisible_control_and_unstorable_characters_are_refused(reject, field, value):
    reject({**REGISTER, field: value}, "VALIDATION_ERROR", field)


def test_readable_unicode_stays_accepted(given):
    given.customer("kunde-Ä-東京", name="Zoë 🙂 O'Brien-Łukasz")


def test_duplicate_keys_are_refused_not_resolved(reject):
    text = (
        '{"type": "RegisterCustomer", "customerId": "cust-1", "customerId": "cust-2", "name": "A", '
        '"email": "a@b.io"}'
    )
    reject(text, "VALIDATION_ERROR", "customerId", "more than once")
    nested = (
        '{"type": "CreateOrder", "customerId": "c", "items": [{"sku": "A", "sku": "B", "quantity": 1, '
        '"unitPrice": 1}]}'
    )
    reject(nested, "VALIDATION_ERROR", "sku", "more than once")


def corrupt(path) -> None:
    """Overwrite the middle of a store file's b-tree pages (header and schema page left intact)."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(path, "r+b") as handle:
        data = bytearray(handle.read())
        for page in range(2, len(data) // page_size):
            start = page * page_size
            data[start + 16 : start + page_size - 16] = bytes(range(256)) * ((page_size - 32) // 256) + bytes(
                (page_size - 32) % 256
            )
        handle.seek(0)
        handle.write(data)


def test_a_store_with_corrupted_pages_is_refused_at_open(settings, cli):
    store = SqliteWriteStore(settings.write_store_path)
    handler = CommandHandler(store)
    for n in range(300):
        assert handler.handle(register(n)).accepted
    store.close()
    corrupt(settings.write_store_path)
    db = sqlite3.connect(settings.write_store_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
    db.close()
    with pytest.raises(WriteStoreError) as raised:
        SqliteWriteStore(settings.write_store_path)
    message = str(raised.value)
    assert "\n" not in message and str(settings.write_store_path) in message and "restore" in message
    result = cli("submit", register(999).decode())
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(settings.write_store_path) in result.stderr


def test_a_line_far_over_the_size_limit_is_refused_without_holding_it(settings):
    """A 24 MB line (no newline for a long while) is answered as too large, and the lines around it run."""
    payload = register(0) + b"\n" + b'{"type": "' + b"x" * (24 << 20) + b'"}\n' + register(1) + b"\n"
    done = submit_bytes(settings, payload, stdin=True)
    assert b"Traceback" not in done.stderr
    results = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert "limit" in results[1]["error"]["message"]
