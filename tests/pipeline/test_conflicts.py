"""Recognising Delta's conflicts in every form PySpark hands them over, without Spark (fast).

The real conflicts (a MERGE racing an OPTIMIZE, and Delta's Java exception) are in ``test_maintenance``;
here are the forms that need no JVM: Delta's Python types (delta-spark 4.1+ and Databricks; absent from
delta-spark 4.0.0), a conflict wrapped by a later error, and a JVM that is gone.
"""

from __future__ import annotations

import pytest

from cqrs_orders.pipeline.conflicts import CONFLICT_CLASS_NAMES, conflict_name, is_conflict


def test_delta_python_conflict_types_are_conflicts():
    base = pytest.importorskip("delta.exceptions.base", reason="delta-spark 4.0.0 has no delta.exceptions")
    classes = [getattr(base, name) for name in sorted(CONFLICT_CLASS_NAMES) if hasattr(base, name)]

    assert len(classes) == len(CONFLICT_CLASS_NAMES)  # every name is one Delta really uses
    for cls in classes:
        assert conflict_name(cls("another writer committed first")) == cls.__name__


def test_a_conflict_behind_a_later_error_is_found():
    class ConcurrentAppendException(Exception):
        pass

    try:
        try:
            raise ConcurrentAppendException("files were added")
        except ConcurrentAppendException as conflict:
            raise RuntimeError("the batch failed") from conflict
    except RuntimeError as error:
        assert conflict_name(error) == "ConcurrentAppendException"


class _Gone:
    def getClass(self):
        raise ConnectionError("the Java gateway is closed")


class _JavaError(Exception):
    java_exception = _Gone()


def test_other_errors_and_an_unreachable_jvm_are_no_conflicts():
    assert not is_conflict(ValueError("ConcurrentAppendException"))  # a message is not a type
    assert not is_conflict(_JavaError("o1.merge failed"))
