"""Spark sessions of their own for writers that must not share SQL confs with the micro-batch's session."""

from __future__ import annotations


def isolated_session(session):
    """A session of the same Spark application with SQL confs of its own: for writers on other threads,
    and for work that sets confs the caller's session must not keep (``maintain``'s file size).

    Gold's refresh and the progress recorder write while a batch may be inside
    :func:`~.idempotency.transaction_id`. Delta takes a write's transaction id from its session's confs, so
    in the batch's session their writes would be recorded under the batch's id, and the next of them under
    that id skipped as already done.
    """
    return session.newSession()
