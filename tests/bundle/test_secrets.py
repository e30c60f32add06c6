"""No secret is ever committed: the bundle, the notebooks, the SQL and the package hold references to secrets
(``{{secrets/<scope>/<key>}}``, secret-scope lookups at runtime), never the values. And the runtime lookup
(``read_secret``) tells a key the scope does not hold (unset) from a scope it cannot read (an error), against
the Secrets API of the fake workspace the bundle tests deploy to (the CLI's own ``libs/testserver``, whose
answers the bundle flow's processes read their secrets from)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from cqrs_orders.config import Secret, read_secret
from cqrs_orders.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["databricks.yml", "resources", "notebooks", "src", "sql", "app"]
TEXT_SUFFIXES = {".yml", ".yaml", ".json", ".py", ".sql", ".sh", ".md", ".toml", ".cfg", ".ini", ".txt", ""}

#: What a leaked credential looks like: a name and a pattern that only matches a real-looking value.
SECRET_PATTERNS = {
    "Azure connection string key": re.compile(
        r"(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*[A-Za-z0-9+/%]{16,}={0,2}", re.I
    ),
    "Databricks personal access token": re.compile(r"\bdapi[0-9a-f]{32}(?:-\d+)?\b"),
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "storage SAS signature": re.compile(r"[?&]sig=[A-Za-z0-9%+/]{20,}"),
    "chat webhook URL with its token": re.compile(
        r"https://(?:hooks\.slack\.com/services|[\w.-]+\.webhook\.office\.com/webhookb2)/[\w@/-]{20,}"
    ),
    "literal password": re.compile(
        r"""(?i)\b(?:password|passwd|pwd|client_secret|api_key)\b["']?\s*[:=]\s*["'](?![<{$*])[^"'\s]{6,}["']"""
    ),
}


def scan_text(text: str) -> list[str]:
    """The names of every kind of secret found in ``text``."""
    return [name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def scanned_files(root: Path) -> list[Path]:
    files = []
    for entry in SCANNED:
        path = root / entry
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return files


def test_no_secrets_in_the_bundle_notebooks_sql_or_source():
    files = scanned_files(ROOT)
    assert any(f.name == "databricks.yml" for f in files) and any(f.suffix == ".py" for f in files)
    found = {str(f.relative_to(ROOT)): scan_text(f.read_text(errors="replace")) for f in files}
    assert {path: kinds for path, kinds in found.items() if kinds} == {}


# Planted secrets are assembled at run time so this file never holds one itself.
_B64 = "Zm9vYmFyYmF6cXV4" * 4
PLANTED = {
    "Azure connection string key": "AccountEndpoint=https://acct.documents.azure.com:443/;AccountKey="
    + _B64
    + "==;",
    "Databricks personal access token": "token: dapi" + "0123456789abcdef" * 2,
    "private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE...",
    "storage SAS signature": "https://acct.blob.core.windows.net/c?sv=2024&s"
    + "ig="
    + "AbCdEf0123456789" * 2,
    "chat webhook URL with its token": "https://hooks.slack.com/services/" + "T000/B000/" + "x" * 24,
    "literal password": 'spark_env_vars: {"PASS' + 'WORD": "hunter2hunter2"}',
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_scanner_finds_a_planted_secret(tmp_path, kind):
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "leaky.job.yml").write_text(f"resources: {{}}\n# {PLANTED[kind]}\n")
    (leaked,) = scanned_files(tmp_path)
    assert scan_text(leaked.read_text()) == [kind]


@pytest.mark.parametrize(
    "reference",
    [
        "EVENTHUB_SEND_CONNECTION: '{{secrets/cqrs-orders/eventhub-send-connection}}'",
        "Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=<key>",
        'password = "${PASSWORD}"',
        "key = settings.secret('COSMOS_KEY')",
    ],
)
def test_references_and_placeholders_are_not_secrets(reference):
    assert scan_text(reference) == []


# --- reading the scope at run time ----------------------------------------------------------------------


@pytest.fixture
def workspace_env(prod_cli, workspace_binary, tmp_path, monkeypatch):
    """A fake workspace of its own holding the scope ``cqrs-orders`` with one secret, and the environment of
    a process that reads it with the SDK's dbutils (as the bundle flow's job tasks do)."""
    workspace = type(prod_cli.workspace)(workspace_binary, tmp_path)
    token = prod_cli.env["DATABRICKS_TOKEN"]
    cli = type(prod_cli)(prod_cli.binary, workspace, token, tmp_path / "cli")
    cli("secrets", "create-scope", "cqrs-orders")
    cli("secrets", "put-secret", "cqrs-orders", "cosmos-key", "--string-value", "not-a-real-key")
    for variable in list(os.environ):
        if variable.startswith("DATABRICKS_"):
            monkeypatch.delenv(variable)
    env = {
        "DATABRICKS_HOST": workspace.url,
        "DATABRICKS_TOKEN": token,
        "DATABRICKS_CONFIG_FILE": str(tmp_path / "none.cfg"),
        "CQRS_SECRET_SCOPE": "cqrs-orders",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sys.modules.pop("databricks.sdk.runtime", None)  # its dbutils is made on import, from the environment
    try:
        yield env
    finally:
        sys.modules.pop("databricks.sdk.runtime", None)
        workspace.stop()


@pytest.mark.databricks_cli
def test_the_scope_answers_a_secret_an_absent_key_and_a_missing_scope_apart(workspace_env, monkeypatch):
    assert read_secret("COSMOS_KEY", os.environ) == Secret("not-a-real-key")
    assert read_secret("EVENTHUB_LISTEN_CONNECTION", os.environ) is None  # absent: unset, no error

    monkeypatch.setenv("CQRS_SECRET_SCOPE", "cqrs-orders-typo")
    with pytest.raises(ConfigurationError, match=r"secret scope 'cqrs-orders-typo' does not exist"):
        read_secret("COSMOS_KEY", os.environ)  # not "unset": a wrong scope would turn features off
