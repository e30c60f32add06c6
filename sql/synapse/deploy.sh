#!/usr/bin/env bash
# Create (or update) the read-side views in a Synapse serverless SQL database, with the data source they
# read through and the role that may read them (setup.sql).
#
#   sql/synapse/deploy.sh -S <workspace>-ondemand.sql.azuresynapse.net -d <database> \
#       -v StorageUrl=abfss://<container>@<account>.dfs.core.windows.net/<path> [sqlcmd auth options]
#
# Every argument goes to sqlcmd unchanged (add e.g. -G or --authentication-method ActiveDirectoryDefault);
# StorageUrl is required: the bundle's synapse_storage_url (`databricks bundle validate` shows it), without a
# trailing '/'. The database must exist already (views cannot live in master): CREATE DATABASE orders_read;
# The workspace's managed identity needs Storage Blob Data Reader on that folder; the callers need none (they
# are members of the role cqrs_orders_readers: docs/operations.md, "Who may read what").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
storage_url=""
previous=""
for argument in "$@"; do
  if [[ "$previous" == "-v" && "$argument" == StorageUrl=* ]]; then storage_url="${argument#StorageUrl=}"; fi
  previous="$argument"
done
if [[ -z "$storage_url" ]]; then
  echo "deploy.sh: pass -v StorageUrl=abfss://<container>@<account>.dfs.core.windows.net/<path>" >&2
  exit 2
fi
if [[ "$storage_url" == */ ]]; then
  echo "deploy.sh: StorageUrl must not end with '/' (the views read silver_orders/ etc. under it)" >&2
  exit 2
fi
if [[ "$storage_url" != abfss://* && "$storage_url" != https://* ]]; then
  echo "deploy.sh: StorageUrl must be an abfss:// or https:// URL of the folder (the bundle's synapse_storage_url)" >&2
  exit 2
fi
if ! command -v sqlcmd > /dev/null; then
  echo "deploy.sh: sqlcmd not found; install go-sqlcmd or mssql-tools18" >&2
  exit 2
fi

for script in setup vw_orders vw_daily_order_metrics vw_product_sales; do
  echo "deploy.sh: running $script.sql" >&2
  sqlcmd -b "$@" -i "$here/$script.sql"
done
