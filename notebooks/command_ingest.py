# Databricks notebook source
# MAGIC %md
# MAGIC # Command ingest
# MAGIC Runs ONE command (the `command` job parameter / widget: a JSON object with a `type`) through the same
# MAGIC handler as `cqrs-orders submit`, and returns the result JSON with `dbutils.notebook.exit`:
# MAGIC `{"commandId", "status": "accepted"|"rejected", "aggregateId", "version", "eventIds", "error"}`.
# MAGIC Callers use `cqrs_orders.client.submit_command(workspace_client, job, command)`.
# MAGIC The write store comes from the job's environment (`CQRS_WRITE_STORE=cosmos`, `COSMOS_*`, secrets).
# MAGIC
# MAGIC Locally it runs as a script: `python notebooks/command_ingest.py '<command json>'` prints it.

# COMMAND ----------

import json
import os
import sys

try:
    dbutils  # noqa: B018 - defined by the Databricks runtime
except NameError:  # not on Databricks: a tiny stand-in with the two calls this notebook makes

    class _LocalWidgets:
        """Widgets from the command line (first argument) or the environment (``CQRS_WIDGET_<NAME>``)."""

        def text(self, name, default_value="", label=None):
            self._defaults = {**getattr(self, "_defaults", {}), name: default_value}

        def get(self, name):
            if name == "command" and len(sys.argv) > 1:
                return sys.argv[1]
            return os.environ.get(f"CQRS_WIDGET_{name.upper()}", getattr(self, "_defaults", {}).get(name, ""))

    class _LocalNotebook:
        def exit(self, value):
            print(value, flush=True)
            raise SystemExit(0)

    class _LocalDbutils:
        widgets = _LocalWidgets()
        notebook = _LocalNotebook()

    dbutils = _LocalDbutils()

# COMMAND ----------

dbutils.widgets.text("command", "", "Command (JSON)")
command = dbutils.widgets.get("command")

# COMMAND ----------

from cqrs_orders.application import wiring  # noqa: E402
from cqrs_orders.config import Settings  # noqa: E402

handler = wiring.command_handler(Settings.from_env())
try:
    result = handler.handle(command).to_dict()
finally:
    handler.store.close()

# COMMAND ----------

dbutils.notebook.exit(json.dumps(result, separators=(",", ":")))
