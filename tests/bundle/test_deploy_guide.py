"""docs/deploy.md and the README's deploy lines stay runnable: their commands run with the real Databricks CLI
against the local fake workspace, the way a reader types them, and the guide's cost table is the bundle's.

Each ```bash block of the guide carries a marker: ``<!-- guide: run as-user -->`` and ``<!-- guide: run
as-service-principal -->`` blocks run, in the page's order, in one shell per identity (a reader's terminal:
a function or a variable set by one block is there for the next), with the values the guide's Azure and
login blocks would have set. ``<!-- guide: check ... -->`` blocks cannot run here (no Azure, no browser):
they are checked for shell syntax, for naming what the bundle's variables expect, and for flags the
pinned CLI has.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"
NOTEBOOK = ROOT / "notebooks" / "explore_read_models.py"

# The identities of the fake workspace (tests/bundle/conftest.py): a token starting with dbapi1 is its
# service principal, whose application id the guide's CI block names.
USER_TOKEN, SERVICE_PRINCIPAL_TOKEN = "dev-user-token", "dbapi1-prod-service-principal"
USER, SERVICE_PRINCIPAL = "tester@databricks.com", "aaaaaaaa-bbbb-4ccc-dddd-eeeeeeeeeeee"
#: What the guide's `$(az ...)` assignments would have set: stand-ins, never sent anywhere but the fake.
FROM_AZURE = {
    "COSMOS_ENDPOINT": "https://cqrs-orders-store.documents.azure.com:443/",
    "COSMOS_KEY": "fake-cosmos-key==",
    "EVENTHUB_SEND_CONNECTION": "Endpoint=sb://cqrs-orders-bus.servicebus.windows.net/;"
    "SharedAccessKeyName=cqrs-orders-send;SharedAccessKey=fake=;EntityPath=order-events",
    "EVENTHUB_LISTEN_CONNECTION": "Endpoint=sb://cqrs-orders-bus.servicebus.windows.net/;"
    "SharedAccessKeyName=cqrs-orders-listen;SharedAccessKey=fake=;EntityPath=order-events",
    "SYNAPSE_ENDPOINT": "cqrs-orders-synapse-ondemand.sql.azuresynapse.net",
}
#: The guide's shell variables that name a bundle variable's value: they must be its default.
BUNDLE_DEFAULTS = {
    "COSMOS_DATABASE": "cosmos_database",
    "EVENTHUB_NAME": "eventhub_name",
    "SECRET_SCOPE": "secret_scope",
    "CATALOG": "catalog",
}
#: The scope keys the deployment reads (docs/operations.md, "Which secret is used for what"); the webhook
#: is optional and the one-policy connection is for laptops.
REQUIRED_SECRETS = {"cosmos-key", "eventhub-send-connection", "eventhub-listen-connection"}

MARKED = re.compile(r"<!-- guide: (run|check) ([\w-]+) -->\n```bash\n(.*?)\n```", re.S)
ANY_BASH = re.compile(r"^```bash$", re.M)
ASSIGNMENT = re.compile(r"(?:^|\s|export\s+)([A-Z][A-Z0-9_]*)=(\$\(|\S*)", re.M)
USED = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")


@dataclass
class Block:
    kind: str  # run | check
    how: str  # as-user | as-service-principal | azure | cli-flags
    code: str
    line: int


def guide_blocks() -> list[Block]:
    text = GUIDE.read_text()
    return [
        Block(m.group(1), m.group(2), m.group(3), text.count("\n", 0, m.start()) + 1)
        for m in MARKED.finditer(text)
    ]


def assignments(code: str) -> dict[str, str]:
    """``NAME=value`` at the start of a shell word; a command substitution's value is ``$(``."""
    return {name: value for name, value in ASSIGNMENT.findall(code)}


def guide_environment() -> dict[str, str]:
    """What the check blocks would leave in the reader's shell: their literal values, and a stand-in for
    each value the Azure CLI would have answered."""
    env = {}
    for block in guide_blocks():
        if block.kind != "check":
            continue
        for name, value in assignments(block.code).items():
            if value == "$(":
                assert name in FROM_AZURE, f"line {block.line}: no stand-in for {name}=$(...)"
                env[name] = FROM_AZURE[name]
            elif "$" not in value:
                env[name] = value
    return env


# --- without the CLI ------------------------------------------------------------------------------------


def test_every_bash_block_of_the_guide_is_marked_run_or_check():
    text = GUIDE.read_text()
    blocks = guide_blocks()
    assert len(blocks) == len(ANY_BASH.findall(text)), "a ```bash block without <!-- guide: run|check ... -->"
    assert {(b.kind, b.how) for b in blocks} == {
        ("run", "as-user"),
        ("run", "as-service-principal"),
        ("check", "azure"),
        ("check", "cli-flags"),
    }


def test_the_blocks_that_cannot_run_here_are_valid_shell():
    for block in guide_blocks():
        done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"docs/deploy.md line {block.line}: {done.stderr}"


def test_every_variable_a_run_block_uses_is_set_by_the_guide_before_it():
    set_so_far = {"HOME", "PATH"}
    for block in guide_blocks():
        if block.kind == "run":
            missing = set(USED.findall(block.code)) - set_so_far - set(assignments(block.code))
            assert not missing, f"docs/deploy.md line {block.line} uses {missing}, which no block before sets"
        set_so_far |= set(assignments(block.code))


# --- with the CLI ---------------------------------------------------------------------------------------


def _load_workspace():
    spec = importlib.util.spec_from_file_location(
        "deploy_guide_workspace", Path(__file__).with_name("workspace.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


workspace = _load_workspace()


@pytest.fixture
def new_cli(databricks_binary, workspace_binary, tmp_path_factory):
    """``new_cli(token)``: the CLI as that identity, with a fake workspace of its own holding the warehouse
    the bundle looks up by name (a real workspace comes with it)."""
    started = []

    def make(token: str):
        server = workspace.Workspace(workspace_binary, tmp_path_factory.mktemp("guide-workspace"))
        started.append(server)
        cli = workspace.Cli(databricks_binary, server, token, tmp_path_factory.mktemp("guide-cli"))
        cli("warehouses", "create", "--json", '{"name": "Serverless Starter Warehouse"}', "--no-wait")
        return cli

    yield make
    for server in started:
        server.stop()


def shell(cli, script: str, extra: dict[str, str]) -> subprocess.CompletedProcess:
    """``script`` in bash in the bundle's folder, with `databricks` (the pinned CLI) and `cqrs-orders` on
    PATH, as ``cli``'s identity."""
    path = f"{cli.binary.parent}:{cli.env['PATH']}"
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cli.bundle,
        env={**cli.env, **extra, "PATH": path},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def run_blocks(cli, how: str) -> subprocess.CompletedProcess:
    script = "".join(
        f"echo '### docs/deploy.md line {b.line}' >&2\n{b.code}\n"
        for b in guide_blocks()
        if (b.kind, b.how) == ("run", how)
    )
    done = shell(cli, script, guide_environment())
    assert done.returncode == 0, f"{how} blocks failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
    assert cli.workspace.unhandled() == []
    return done


def calls(cli, method: str, prefix: str) -> list[dict]:
    return [r for r in cli.workspace.requests() if r["method"] == method and r["path"].startswith(prefix)]


def run_now_jobs(cli) -> list[dict]:
    """The bodies of the run-now calls, in order."""
    return [request["body"] for request in calls(cli, "POST", "/api/2.2/jobs/run-now")]


def secret_value(body: dict) -> str:
    """A put-secret body's value: a string, or base64 bytes (what the CLI sends for stdin)."""
    if "string_value" in body:
        return body["string_value"]
    return base64.b64decode(body["bytes_value"]).decode()


@pytest.mark.databricks_cli
@pytest.mark.timeout(1800)
def test_the_guide_deploys_runs_and_destroys_dev_as_a_developer(new_cli):
    cli = new_cli(USER_TOKEN)
    done = run_blocks(cli, "as-user")

    # Section 3: the grants before the first deploy, and the secrets (each on stdin, none in a command line).
    granted = {
        (change["principal"], tuple(change["add"]))
        for request in calls(cli, "PATCH", "/api/2.1/unity-catalog/permissions/catalog/main")
        for change in request["body"]["changes"]
    }
    assert {
        (USER, ("USE_CATALOG", "CREATE_SCHEMA")),
        (SERVICE_PRINCIPAL, ("USE_CATALOG", "CREATE_SCHEMA")),
        ("users", ("USE_CATALOG",)),
    } <= granted
    secrets = {r["body"]["key"]: r["body"] for r in calls(cli, "POST", "/api/2.0/secrets/put")}
    assert set(secrets) == REQUIRED_SECRETS
    assert secret_value(secrets["cosmos-key"]) == FROM_AZURE["COSMOS_KEY"]  # exactly: no newline added
    [acl] = calls(cli, "POST", "/api/2.0/secrets/acls/put")
    assert (acl["body"]["principal"], acl["body"]["permission"]) == (SERVICE_PRINCIPAL, "READ")
    assert FROM_AZURE["COSMOS_KEY"] not in done.stderr + done.stdout

    # Section 5: the deploy and its runs; the app's principal gets USE CATALOG once the app exists.
    [app_principal] = {principal for principal, _ in granted} - {USER, SERVICE_PRINCIPAL, "users"}
    assert (app_principal, ("USE_CATALOG",)) in granted
    started = run_now_jobs(cli)
    assert len(started) == 4  # projection, lag_monitor, views, command_ingest
    [ingest] = [s for s in started if s.get("job_parameters")]
    assert ingest["job_parameters"] == {
        "command_file": "/Volumes/main/dev_tester_cqrs_orders/command_inbox/first-command.json"
    }
    uploaded = [r["path"] for r in calls(cli, "PUT", "/api/2.0/fs/files/Volumes/")]
    assert uploaded == [
        "/api/2.0/fs/files/Volumes/main/dev_tester_cqrs_orders/command_inbox/first-command.json"
    ]

    # Section 9: the connection files, for this deployment's warehouse and schema, outside the bundle.
    home = Path(cli.env["HOME"])
    assert not list(cli.bundle.glob("*.pbids")) and not list(cli.bundle.glob("*.json"))
    [warehouse] = [
        w
        for w in cli("warehouses", "list", "--output", "json").json()
        if w["name"] == "Serverless Starter Warehouse"
    ]
    [sql] = json.loads((home / "cqrs-orders.pbids").read_text())["connections"]
    assert sql["details"]["address"] == {
        "host": "adb-1234567890123456.7.azuredatabricks.net",
        "path": f"/sql/1.0/warehouses/{warehouse['id']}",
    }
    assert sql["options"] == {"Catalog": "main", "Database": "dev_tester_cqrs_orders"}
    [synapse] = json.loads((home / "cqrs-orders-synapse.pbids").read_text())["connections"]
    assert synapse["details"]["address"] == {
        "server": FROM_AZURE["SYNAPSE_ENDPOINT"],
        "database": "orders_read",
    }

    # Section 10: destroy leaves no job behind.
    assert cli("jobs", "list", "--output", "json").json() == []


@pytest.mark.databricks_cli
@pytest.mark.timeout(1800)
def test_the_guide_deploys_and_destroys_prod_as_the_service_principal(new_cli):
    cli = new_cli(SERVICE_PRINCIPAL_TOKEN)
    run_blocks(cli, "as-service-principal")
    created = calls(cli, "POST", "/api/2.2/jobs/create")
    assert len(created) == 8 and all(  # every job of resources/*.job.yml
        c["body"]["run_as"] == {"service_principal_name": SERVICE_PRINCIPAL} for c in created
    )
    assert calls(cli, "POST", "/api/2.0/apps/")  # the app's code deployed (bundle run command_api)
    assert len(run_now_jobs(cli)) == 1  # views
    assert cli("jobs", "list", "--output", "json").json() == []


@pytest.mark.databricks_cli
def test_the_login_blocks_use_commands_and_flags_the_pinned_cli_has(new_cli):
    cli = new_cli(USER_TOKEN)
    checked = 0
    for block in guide_blocks():
        if block.how != "cli-flags":
            continue
        for line in block.code.splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[0] != "databricks":
                continue
            command = [w for w in words[1:] if re.fullmatch(r"[a-z][a-z-]*", w)]
            flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
            shown = cli(*command[:2], "--help").stdout if command else cli("--help").stdout
            for flag in flags:
                assert flag in shown, (
                    f"docs/deploy.md line {block.line}: `databricks {' '.join(command)}` has no {flag}"
                )
            checked += 1
    assert checked >= 4


def resolved(cli, target: str) -> dict:
    variables = [f"--var=cosmos_endpoint={FROM_AZURE['COSMOS_ENDPOINT']}"]
    if target == "prod":
        variables.append(f"--var=service_principal={SERVICE_PRINCIPAL}")
    return cli("bundle", "validate", "--output", "json", "--target", target, *variables).json()


@pytest.mark.databricks_cli
def test_the_azure_blocks_name_what_the_bundle_variables_expect(new_cli):
    config = resolved(new_cli(SERVICE_PRINCIPAL_TOKEN), "prod")
    named = {}
    for block in guide_blocks():
        if block.kind == "check":
            named.update(assignments(block.code))
    for shell_name, variable in BUNDLE_DEFAULTS.items():
        assert named[shell_name] == config["variables"][variable]["default"], shell_name
    app_secrets = {
        r["secret"]["key"] for r in config["resources"]["apps"]["command_api"]["resources"] if "secret" in r
    }
    assert app_secrets <= REQUIRED_SECRETS


# --- the cost table -------------------------------------------------------------------------------------

COST_TABLE = re.compile(r"<!-- guide: cost-table start -->\n(.*?)\n<!-- guide: cost-table end -->", re.S)
RATES = re.compile(r"^\| `(\w+)` \| ([0-9.]+) \|$", re.M)


def runs_per_day(cron: str) -> int:
    """Fires per day of a Quartz expression that fires every day (seconds, minutes, hours fields)."""
    _, minutes, hours, day, month, weekday = cron.split()[:6]
    assert (day, month, weekday) == ("*", "*", "?"), f"not a daily schedule: {cron}"

    def count(field: str, size: int) -> int:
        if field == "*":
            return size
        if "/" in field:
            start, step = field.split("/")
            return len(range(int(start), size, int(step)))
        return len(field.split(","))

    return count(minutes, 60) * count(hours, 24)


def declared_rows(config: dict) -> dict[str, list[str]]:
    """Each job's first five columns of the cost table, from the resolved bundle."""
    rows = {}
    for key, job in config["resources"]["jobs"].items():
        [task] = job["tasks"]
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job.get("job_clusters", [])}
        cluster = clusters.get(task.get("job_cluster_key")) or task.get("new_cluster")
        if cluster:
            compute, size = "classic", f"`{cluster['node_type_id']}`, {1 + cluster.get('num_workers', 0)} VMs"
        else:
            compute, size = "serverless", "none"
        if "continuous" in job:
            trigger, runs = "continuous", "always on"
        elif "schedule" in job:
            schedule = job["schedule"]
            trigger = f"`{schedule['quartz_cron_expression']}` {schedule['timezone_id']}"
            runs = str(runs_per_day(schedule["quartz_cron_expression"]))
        else:
            trigger, runs = "on demand", "on demand"
        rows[key] = [f"`{key}`", compute, size, trigger, runs]
    return rows


def number(cell: str) -> float | None:
    found = re.match(r"([0-9.]+)", cell)
    return float(found.group(1)) if found else None


@pytest.mark.databricks_cli
def test_the_cost_table_is_the_bundles_jobs_at_their_declared_size(new_cli):
    config = resolved(new_cli(SERVICE_PRINCIPAL_TOKEN), "prod")
    text = GUIDE.read_text()
    rates = {node: float(rate) for node, rate in RATES.findall(text)}
    lines = COST_TABLE.search(text).group(1).splitlines()[2:]  # after the header and its rule
    table = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0].strip("`")] = cells
    declared = declared_rows(config)
    classic_per_day = 0.0
    expected = "\n".join("| " + " | ".join(row) + " | ..." for row in declared.values())
    assert set(table) == set(declared), f"the jobs the table should list:\n{expected}"
    for key, row in declared.items():
        cells = table[key]
        assert cells[:5] == row, f"{key}: the bundle declares {row}, the guide says {cells[:5]}"
        dbu_per_hour, hours, per_day = cells[5:8]
        if row[1] == "serverless":
            assert dbu_per_hour == "measured", key  # no declared size: only a measurement tells
            continue
        node, vms = re.fullmatch(r"`(\w+)`, (\d+) VMs", row[2]).groups()
        assert node in rates, f"no assumed DBU rate for {node} in the guide's rate table"
        assert number(dbu_per_hour) == pytest.approx(rates[node] * int(vms)), key
        if row[3] == "continuous":
            assert number(hours) == 24, key
        if number(hours) is not None:
            assert number(per_day) == pytest.approx(number(dbu_per_hour) * number(hours)), key
            classic_per_day += number(per_day)
    assert f"classic compute is {classic_per_day:g} DBU a day" in text  # the sum the prose states


# --- the notebook's defaults are the dev deploy's names ---------------------------------------------------


@pytest.mark.databricks_cli
def test_the_exploration_notebook_defaults_to_what_a_dev_deploy_creates(new_cli):
    config = resolved(new_cli(USER_TOKEN), "dev")
    setup = NOTEBOOK.read_text().split("\n# COMMAND ----------\n")[1]
    namespace = {}
    exec(compile(setup, str(NOTEBOOK), "exec"), namespace)  # no dbutils: defines, reads no widget
    user = config["workspace"]["current_user"]
    defaults = namespace["dev_defaults"](user["userName"])
    assert defaults == {
        "catalog": config["variables"]["catalog"]["value"],
        "schema": config["resources"]["schemas"]["cqrs_orders"]["name"],
        "wheel_dir": f"{config['workspace']['artifact_path']}/.internal",
    }
    assert namespace["short_name"](user["userName"]) == user["short_name"]
    # The CLI's normalization (libs/textutil.NormalizeString) for names it did not see here.
    assert namespace["short_name"]("Ada.Lovelace+dev@example.com") == "ada_lovelace_dev"
    assert namespace["short_name"]("__Jean--Luc__@example.com") == "jean_luc"


# --- the README's deploy lines --------------------------------------------------------------------------

#: The README's placeholders and what the fake workspace takes for them.
README_PLACEHOLDERS = {
    "<account>": "cqrs-orders-store",
    "<endpoint>": FROM_AZURE["COSMOS_ENDPOINT"],
    "<app-id>": SERVICE_PRINCIPAL,
    "<service-principal>": SERVICE_PRINCIPAL,
}
INLINE_CODE = re.compile(r"`([^`]+)`")
FENCED = re.compile(r"```bash\n(.*?)```", re.S)


def readme_deploy_steps(text: str) -> list[str]:
    """The shell lines of the README's "Deploying to Databricks" section, in order: `databricks ...` commands
    and `export NAME=value` lines, from its shell blocks and from its inline code (joined where the
    paragraph wraps it)."""
    section = text.split("## Deploying to Databricks", 1)[1].split("\n## ", 1)[0]
    found = []  # (where in the section, line)
    for block in FENCED.finditer(section):
        at = block.start()
        for line in block.group(1).splitlines(keepends=True):
            if line.strip().startswith(("databricks ", "export ")):
                found.append((at, line.strip()))
            at += len(line)
    prose = FENCED.sub(lambda block: " " * len(block.group(0)), section)
    for code in INLINE_CODE.finditer(prose):
        line = " ".join(code.group(1).split())
        if line.startswith("export ") or (line.startswith("databricks ") and len(line.split()) > 2):
            found.append((code.start(), line))
    return [line for _, line in sorted(found, key=lambda item: item[0])]


def substituted(command: str) -> str:
    for placeholder, value in README_PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    assert "<" not in command.split("#")[0], f"a placeholder the test does not know: {command}"
    return command


@pytest.mark.databricks_cli
@pytest.mark.timeout(1800)
def test_the_readme_deploy_lines_run_as_written(new_cli):
    """Each command in a shell of its own with every `export` the README showed before it (a reader's
    terminal; CI's environment for prod), as the developer, or as the service principal for prod."""
    steps = readme_deploy_steps(README.read_text())
    assert any(re.search(r"bundle deploy (-t|--target) prod", step) for step in steps), steps
    user, principal = new_cli(USER_TOKEN), new_cli(SERVICE_PRINCIPAL_TOKEN)
    user("secrets", "create-scope", "cqrs-orders")  # step 1's scope, which the README creates in prose
    exports = []
    for step in steps:
        if step.startswith("export "):
            exports.append(substituted(step))
            continue
        cli = principal if re.search(r"(-t|--target) prod\b", step) else user
        done = shell(cli, "\n".join([*exports, substituted(step)]), {})
        assert done.returncode == 0, f"README: `{step}` failed:\n{done.stderr[-3000:]}"
    assert user.workspace.unhandled() == [] and principal.workspace.unhandled() == []
