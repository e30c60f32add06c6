"""Erasure without Spark: the masking rule, and the embedded event log rewritten and vacuumed until no file
under it holds the erased values (Parquet read with pyarrow, the Delta JSON commits read as text).

The write stores' side is in the write-store contract (``tests/command_side/test_write_store_contract.py``);
every place at once, through Spark, in ``tests/pipeline/test_erasure.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cqrs_orders.adapters.event_log import EventLog
from cqrs_orders.application.erasure import MARKER, PERSONAL_FIELDS, holds_personal, mask_personal
from cqrs_orders.envelope import CustomerState

NAME, EMAIL = "Quillon Marbeck", "q.marbeck@example.test"


def test_the_personal_fields_are_the_customer_states_text_beyond_its_id():
    """A text field added to the customer's state is personal until someone says otherwise: this fails
    until PERSONAL_FIELDS names it (or the test is told why not)."""
    text_fields = {
        name
        for name, field in CustomerState.model_fields.items()
        if field.annotation is str and name != "customerId"
    }
    assert text_fields == set(PERSONAL_FIELDS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name":"Ada","email":"a@b.c","x":1}', '{"name":"[erased]","email":"[erased]","x":1}'),
        (
            '{"data": {"name" : "A \\"quoted\\" \\\\ name", "sku": "n"}}',
            '{"data": {"name" : "[erased]", "sku": "n"}}',
        ),
        ('{"email":"\\u0061da@x.y"}', '{"email":"[erased]"}'),
        ('{"name":"[erased]"}', '{"name":"[erased]"}'),
        ('{"name": 12, "username": "kept"}', '{"name": 12, "username": "kept"}'),
        ('not json "name":"Ada Lo', 'not json "name":"Ada Lo'),  # no closing quote: nothing to match
        ('{"data":{"name":"Ada","email":"a@b.c"', '{"data":{"name":"[erased]","email":"[erased]"'),
    ],
)
def test_masking_replaces_only_the_personal_values(text, expected):
    assert mask_personal(text) == expected
    assert not holds_personal(expected) or expected == text


def test_a_masked_event_is_still_the_same_json_but_for_the_personal_values():
    body = json.dumps(
        {"eventId": "e", "data": {"customerId": "c", "name": NAME, "email": EMAIL, "n": "9.50"}}
    )
    masked = json.loads(mask_personal(body))
    assert masked == {
        "eventId": "e",
        "data": {"customerId": "c", "name": MARKER, "email": MARKER, "n": "9.50"},
    }
    assert holds_personal(body) and not holds_personal(mask_personal(body))


def customer_body(customer_id: str, name: str, email: str, version: int = 1) -> str:
    data = {"customerId": customer_id, "name": name, "email": email}
    return json.dumps({"eventId": f"{customer_id}-{version}", "aggregateId": customer_id, "version": version,
                       "data": data})  # fmt: skip


def files_holding(root: Path, values: tuple[str, ...]) -> dict[str, list[str]]:
    """Per file under ``root`` that holds any of ``values``: which. A Parquet file is read with pyarrow
    (its pages are compressed: bytes would not show a value), every other file as bytes."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            text = json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
            text += path.read_bytes().decode("latin-1")  # the footer's statistics are bytes too
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        holding = [value for value in values if value in text]
        if holding:
            found[str(path.relative_to(root))] = holding
    return found


def test_the_event_log_is_rewritten_and_vacuumed_until_no_file_holds_the_values(tmp_path):
    log = EventLog(tmp_path / "event_log", partitions=2)
    log.append(
        [("cust-a", customer_body("cust-a", NAME, EMAIL)), ("cust-b", customer_body("cust-b", "Bo", "b@x.y"))]
    )
    log.append(
        [("cust-a", customer_body("cust-a", "Quillon M.", EMAIL, 2)), (None, f"broken line {NAME};{EMAIL}")]
    )
    before = log.read().to_pylist()
    assert files_holding(tmp_path, (NAME, EMAIL))

    assert log.erase("cust-a", {NAME, EMAIL, "Quillon M."}) == 3
    assert log.vacuum(0, enforce_retention=False) > 0

    assert files_holding(tmp_path, (NAME, EMAIL, "Quillon M.", "marbeck")) == {}
    after = log.read().to_pylist()
    assert [(r["partition"], r["offset"], r["partition_key"]) for r in after] == [
        (r["partition"], r["offset"], r["partition_key"]) for r in before
    ]
    bodies = {r["partition_key"] or "keyless": r["body"] for r in after}
    assert json.loads(bodies["cust-b"])["data"]["name"] == "Bo"  # another customer's record as it was
    assert json.loads(bodies["cust-a"])["data"] == {"customerId": "cust-a", "name": MARKER, "email": MARKER}
    assert bodies["keyless"] == f"broken line {MARKER};{MARKER}"
    assert log.erase("cust-a", {NAME, EMAIL}) == 0  # again: nothing left to change
    assert log.append([("cust-c", customer_body("cust-c", "Cy", "c@x.y"))])[0][1] >= 0  # the log goes on
