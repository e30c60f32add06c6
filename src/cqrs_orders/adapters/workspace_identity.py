"""Who a process on Databricks compute runs as, asked of the workspace with the runtime's own credentials:
the caller the command-ingest job records (:mod:`cqrs_orders.application.identity` says why)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cqrs_orders.application.identity import DATABRICKS, Caller, bounded, os_user
from cqrs_orders.config import running_on_databricks

logger = logging.getLogger(__name__)


def databricks_identity(env: Mapping[str, str] | None = None) -> Caller:
    """On Databricks compute: the principal the process runs as (a job's run-as identity), asked of the
    workspace with the runtime's own credentials. Anywhere else, or when the workspace cannot say, the
    OS account (marked as such) and a warning: the job still runs, and its events say what is known."""
    if not running_on_databricks(env):
        return os_user()
    try:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        me = WorkspaceClient(config=Config(retry_timeout_seconds=15)).current_user.me()
        name = me.user_name or me.display_name
        if name:
            return Caller(bounded(name), DATABRICKS)
    except Exception as error:  # any failure only costs the audit detail, never the commands
        logger.warning("could not ask the workspace who runs this job (%s); recording the OS user", error)
    return os_user()
