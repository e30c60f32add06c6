#!/usr/bin/env bash
# Create (or update) the read-side views in a Synapse serverless SQL database.
#
#   sql/synapse/deploy.sh -S <workspace>-ondemand.sql.azuresynapse.net -d <database> \
#       -v StorageUrl=https://<account>.dfs.core.windows.net/<container>/<warehouse path> [sqlcmd auth options]
#
# Every argument goes to sqlcmd unchanged (add e.g. -G or --authentication-method ActiveDirectoryDefault);
# StorageUrl is required and must not end with '/'. The database must exist already (views cannot live in
# master): CREATE DATABASE orders_read; The identity you log in with needs read access (Storage Blob Data
# Reader) on the storage account.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
storage_url=""
previous=""
for argument in "$@"; do
  if [[ "$previous" == "-v" && "$argument" == StorageUrl=* ]]; then storage_url="${argument#StorageUrl=}"; fi
  previous="$argument"
done
if [[ -z "$storage_url" ]]; then
  echo "deploy.sh: pass -v StorageUrl=https://<account>.dfs.core.windows.net/<container>/<path>" >&2
  exit 2
fi
if [[ "$storage_url" == */ ]]; then
  echo "deploy.sh: StorageUrl must not end with '/' (the views append /silver_orders/ etc.)" >&2
  exit 2
fi
if ! command -v sqlcmd > /dev/null; then
  echo "deploy.sh: sqlcmd not found; install go-sqlcmd or mssql-tools18" >&2
  exit 2
fi

for view in vw_order_summary vw_daily_order_metrics; do
  echo "deploy.sh: creating dbo.$view" >&2
  sqlcmd -b "$@" -i "$here/$view.sql"
done
