"""``cqrs-orders cosmos-setup``: create the Cosmos DB database and container the write store needs, as
:mod:`cqrs_orders.adapters.cosmos_containers` declares them, or report how an existing one differs.

Run once per account before the first deploy (and again after upgrading, to see whether the declared
policy changed): it is idempotent, and it never changes an existing container unless ``--update`` says so.
"""

from __future__ import annotations

import json
import logging

from cqrs_orders.config import COSMOS_KEY
from cqrs_orders.errors import ConfigurationError, WriteStoreError
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)


def register(subcommands, common) -> None:
    """Add ``cosmos-setup``; it sets ``run(args, settings) -> exit code``."""
    setup = subcommands.add_parser(
        "cosmos-setup",
        parents=[common],
        help="create the Cosmos DB database and container of the write store (idempotent)",
        description="Create the write store's Cosmos DB database (COSMOS_DATABASE / --cosmos-database) and "
        "container (partition key /aggregateId, no indexed path, TTL on per document: "
        "docs/operations.md, 'Cosmos DB containers and cost') unless they exist; compare an existing "
        "container with the declared properties. Prints one JSON object (database, container, action: "
        "created | unchanged | updated | differs | missing, differences). Exits 0 when the container "
        "matches (or was created or updated), 2 when it differs or is missing. Needs COSMOS_ENDPOINT "
        "(--cosmos-endpoint) and COSMOS_KEY (environment or --secret-scope, key cosmos-key).",
    )
    setup.add_argument(
        "--container", metavar="NAME", help="container name (default: COSMOS_CONTAINER or order-store)"
    )
    mode = setup.add_mutually_exclusive_group()
    mode.add_argument(
        "--update",
        action="store_true",
        help="replace an existing container's indexing policy and default TTL with the declared ones "
        "(the partition key cannot be changed)",
    )
    mode.add_argument("--check", action="store_true", help="create and change nothing; only compare")
    setup.set_defaults(run=run_setup)


def run_setup(args, settings) -> int:
    from azure.cosmos import CosmosClient
    from azure.cosmos.exceptions import CosmosHttpResponseError

    from cqrs_orders.adapters.cosmos_containers import ORDER_STORE, ensure_container

    key = settings.secret(COSMOS_KEY)
    if not settings.cosmos_endpoint or key is None:
        raise ConfigurationError(
            "cosmos-setup needs COSMOS_ENDPOINT (--cosmos-endpoint) and COSMOS_KEY (environment, or the "
            "secret scope given as --secret-scope, key cosmos-key)."
        )
    name = args.container or settings.cosmos_container
    client = CosmosClient(settings.cosmos_endpoint, credential=key.reveal())
    try:
        result = ensure_container(
            client, settings.cosmos_database, ORDER_STORE, name=name, update=args.update, check=args.check
        )
    except CosmosHttpResponseError as error:
        raise WriteStoreError(
            f"Could not set up {settings.cosmos_database}/{name} (HTTP {error.status_code}: {error.reason}); "
            "check COSMOS_ENDPOINT and that COSMOS_KEY is the account key (not a read-only key)."
        ) from error
    finally:
        client.close()
    print(json.dumps(result.to_dict()))
    if result.ok:
        log.info("container %s/%s: %s", result.database, result.container, result.action)
        return ExitCode.OK
    where = f"the container {result.database}/{result.container}"
    if result.action == "missing":
        raise ConfigurationError(f"{where} does not exist; run cosmos-setup without --check to create it.")
    fixable = not any(text.startswith("partition key") for text in result.differences)
    fix = "; run cosmos-setup --update to apply the declared policy" if fixable else ""
    raise ConfigurationError(f"{where} differs: {'; '.join(result.differences)}{fix}.")
