"""The test broker's own setup, without starting it."""

from __future__ import annotations

import sys


def test_cluster_ids_never_start_with_a_dash():
    """One random id in 64 did, and the storage tool then read it as an option (seen as a failed suite)."""
    broker = sys.modules["cqrs_orders_test_kafka_broker"]  # loaded by this folder's conftest
    ids = [broker._cluster_id() for _ in range(2000)]

    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert len(set(ids)) == 2000 and all(len(cluster_id) == 22 for cluster_id in ids)
