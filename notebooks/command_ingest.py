# Databricks notebook source
# MAGIC %md
# MAGIC # Command ingest
# MAGIC Runs the commands in the file named by the `command_file` job parameter (a path in the `command_inbox`
# MAGIC volume) through the same handler as `cqrs-orders submit`: one command (a JSON object with a `type`)
# MAGIC answers one result, a batch (a JSON array, or a `.jsonl` file of one command per line) answers a JSON
# MAGIC array with one result per command, in order. The answer goes back with `dbutils.notebook.exit`:
# MAGIC `{"commandId", "status": "accepted"|"rejected", "aggregateId", "version", "eventIds", "error"}`.
# MAGIC Callers use `cqrs_orders.client.submit_command(workspace_client, job, command_or_commands, inbox=...)`,
# MAGIC which uploads the file first.
# MAGIC
# MAGIC A path, not the commands: job parameters are shown to everyone who may view the job's runs, and
# MAGIC commands carry names and e-mail addresses. The file is deleted once its commands are answered (their
# MAGIC results are kept by the write store), so the volume holds personal data only while a run waits.
# MAGIC
# MAGIC Then it tries one drain of the outbox under the relay lease: holding it, it publishes the events; when
# MAGIC the command API's relay holds it, that relay publishes them. Which of the two happened is the task
# MAGIC value `relay` (`{"published", "publishedBy", "note"}`) and the last line of the cell's output.
# MAGIC
# MAGIC Settings come as job parameters (serverless compute has no environment variables): `write_store`,
# MAGIC `publisher`, `cosmos_endpoint`, `cosmos_database`, `eventhub_name`, `command_id_retention_days` (the
# MAGIC idempotency window) and `secret_scope`, the scope holding `cosmos-key` and `eventhub-send-connection`.
# MAGIC On serverless job compute a notebook task takes no libraries, so `wheel_dir` names the bundle's
# MAGIC artifact folder and the notebook installs the wheel.
# MAGIC
# MAGIC Locally it runs as a script: `python notebooks/command_ingest.py <command file>` prints the answer;
# MAGIC other parameters come from `CQRS_WIDGET_<NAME>` environment variables.

# COMMAND ----------

import glob
import json
import os
import subprocess
import sys

try:
    dbutils  # noqa: B018 - defined by the Databricks runtime
except NameError:  # not on Databricks: a tiny stand-in with the two calls this notebook makes

    class _LocalWidgets:
        """Widgets from the command line (first argument) or the environment (``CQRS_WIDGET_<NAME>``)."""

        def text(self, name, default_value="", label=None):
            self._defaults = {**getattr(self, "_defaults", {}), name: default_value}

        def get(self, name):
            if name == "command_file" and len(sys.argv) > 1:
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

#: Widget -> the setting it overrides (the names of cqrs_orders.config.OVERRIDABLE).
SETTING_WIDGETS = {
    "write_store": "CQRS_WRITE_STORE",
    "publisher": "CQRS_PUBLISHER",
    "cosmos_endpoint": "COSMOS_ENDPOINT",
    "cosmos_database": "COSMOS_DATABASE",
    "eventhub_name": "EVENTHUB_NAME",
    "command_id_retention_days": "CQRS_COMMAND_ID_RETENTION_DAYS",
    "secret_scope": "CQRS_SECRET_SCOPE",
}
dbutils.widgets.text("command_file", "", "Volume path of a JSON command, a JSON array or a .jsonl file")
dbutils.widgets.text("wheel_dir", "", "Folder of the cqrs_orders wheel to install (serverless)")
for widget in SETTING_WIDGETS:
    dbutils.widgets.text(widget, "")
command_file = dbutils.widgets.get("command_file")
if not command_file:
    raise ValueError(
        "no command_file: pass the volume path of the commands as the job parameter command_file"
    )
wheel_dir = dbutils.widgets.get("wheel_dir")
overrides = {setting: dbutils.widgets.get(widget) or None for widget, setting in SETTING_WIDGETS.items()}

# COMMAND ----------

if wheel_dir:  # the newest wheel the bundle deployed (dev wheels carry a timestamped version)
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "cqrs_orders-*.whl")))
    if not wheels:
        raise FileNotFoundError(f"no cqrs_orders wheel in {wheel_dir}: run `databricks bundle deploy`")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", wheels[-1]], check=True)

# COMMAND ----------

from cqrs_orders import wiring  # noqa: E402
from cqrs_orders.adapters.workspace_identity import databricks_identity  # noqa: E402
from cqrs_orders.application.batch import handle_payload, publish_pending  # noqa: E402
from cqrs_orders.config import Settings  # noqa: E402

with open(command_file, encoding="utf-8") as opened:  # a volume is a local path on Databricks compute
    payload = opened.read()
if command_file.endswith(".jsonl"):  # one command per line: the same batch as a JSON array of them
    payload = "[" + ",".join(line for line in payload.splitlines() if line.strip()) + "]"

settings = Settings.from_env(overrides=overrides)
handler = wiring.command_handler(settings)
caller = databricks_identity()  # the run-as principal, as the workspace says it
try:
    result = handle_payload(handler, payload, caller)
finally:
    handler.store.close()
os.remove(command_file)  # answered: the results are in the write store, the personal data need not stay here

# COMMAND ----------

relay = wiring.relay(settings, who="command_ingest job")
try:
    relayed = publish_pending(relay)
finally:
    relay.close()
print(f"relay: {relayed['note']}", file=sys.stderr)  # stdout is the result's (a local run prints it there)
if hasattr(dbutils, "jobs"):  # on Databricks: the run's task value, beside the result
    dbutils.jobs.taskValues.set(key="relay", value=relayed)

# COMMAND ----------

dbutils.notebook.exit(json.dumps(result, separators=(",", ":")))
