"""``POST /commands`` in the OpenAPI document: the body's schema is every declared command's, told apart by
``type``, for one command and for a batch, so a client generated from the document knows each field. Each
command's schema there is the one ``cqrs-orders commands --json`` prints and ``docs/commands.md`` is written
from: the model's own, with its example and limits; a test fails when any of them drifts from the class."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.cli import main
from cqrs_orders.domain import command_reference
from cqrs_orders.domain.commands import COMMANDS, validate_command
from cqrs_orders.errors import ValidationError
from cqrs_orders.http.app import create_app
from cqrs_orders.http.status import MAX_BATCH_COMMANDS

REF = "#/components/schemas/"


@pytest.fixture
def document(tmp_path) -> dict:
    app = create_app(CommandHandler(SqliteWriteStore(tmp_path / "write_store.sqlite")), read_models=None)

    async def fetch():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/openapi.json")

    answer = asyncio.run(fetch())
    assert answer.status_code == 200
    return answer.json()


def resolve(document: dict, schema: dict) -> dict:
    return document["components"]["schemas"][schema["$ref"].removeprefix(REF)]


def test_the_body_is_one_declared_command_or_an_array_of_them(document):
    body = document["paths"]["/commands"]["post"]["requestBody"]["content"]["application/json"]
    one, batch = body["schema"]["oneOf"]

    assert batch["type"] == "array" and batch["maxItems"] == MAX_BATCH_COMMANDS
    assert batch["items"] == one
    command = resolve(document, one)
    assert command["discriminator"]["propertyName"] == "type"
    assert set(command["discriminator"]["mapping"]) == set(COMMANDS)
    assert [resolve(document, option)["title"] for option in command["oneOf"]] == list(COMMANDS)
    assert {name: example["value"] for name, example in body["examples"].items() if name != "batch"} == {
        name: command.example for name, command in COMMANDS.items()
    }
    batch = body["examples"]["batch"]["value"]
    assert [command["type"] for command in batch] == [n for n, c in COMMANDS.items() if c.creates]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_schema_has_its_declared_fields(document, name):
    schema = document["components"]["schemas"][name]
    model = COMMANDS[name]

    assert schema["properties"]["type"]["const"] == name
    assert set(schema["properties"]) == set(model.model_fields)
    required = {field for field, info in model.model_fields.items() if info.is_required()}
    assert set(schema["required"]) == required
    assert schema["additionalProperties"] is False  # unknown fields are refused
    assert schema["description"] == model.__doc__


def test_nested_schemas_resolve(document):
    schemas = document["components"]["schemas"]
    items = schemas["CreateOrder"]["properties"]["items"]["items"]
    assert set(resolve(document, items)["properties"]) == {"sku", "quantity", "unitPrice"}
    assert "userId" in resolve(document, schemas["ConfirmOrder"]["properties"]["metadata"])["properties"]


def inline(schema, definitions: dict, prefix: str):
    """The schema with every ``$ref`` under ``prefix`` replaced by what it names: two schemas that keep
    their shared parts in different places (OpenAPI's components, a standalone schema's ``$defs``) compare
    equal exactly when they say the same."""
    if isinstance(schema, dict):
        if isinstance(schema.get("$ref"), str) and schema["$ref"].startswith(prefix):
            return inline(definitions[schema["$ref"].removeprefix(prefix)], definitions, prefix)
        return {key: inline(value, definitions, prefix) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [inline(value, definitions, prefix) for value in schema]
    return schema


@pytest.mark.parametrize("name", list(COMMANDS))
def test_openapi_the_commands_json_and_the_model_give_one_schema(document, name, capsys):
    components = document["components"]["schemas"]
    in_openapi = inline(components[name], components, REF)
    standalone = command_reference.schema(name)
    from_model = inline(standalone, standalone.get("$defs", {}), command_reference.DEFS)
    capsys.readouterr()
    assert main(["commands", "--json", name]) == 0
    printed = json.loads(capsys.readouterr().out)

    assert printed == standalone
    assert in_openapi == from_model
    # The model's own schema (pydantic's), with the declared example added: nothing written by hand.
    model = COMMANDS[name].model_json_schema(ref_template=command_reference.DEFS + "{model}")
    assert from_model == {
        **inline(model, model.get("$defs", {}), command_reference.DEFS),
        "examples": [COMMANDS[name].example],
    }


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_schema_shows_an_example_the_command_accepts(document, name):
    [example] = document["components"]["schemas"][name]["examples"]
    assert example["type"] == name
    assert validate_command(example).type == name


def test_the_schemas_state_the_limits_the_models_enforce(document):
    schemas = document["components"]["schemas"]
    create, add, item = schemas["CreateOrder"], schemas["AddOrderItem"], schemas["Item"]
    assert (create["properties"]["items"]["minItems"], create["properties"]["items"]["maxItems"]) == (1, 500)
    assert add["properties"]["quantity"] == {**add["properties"]["quantity"], "exclusiveMinimum": 0,
                                             "maximum": 1_000_000}  # fmt: skip
    assert schemas["RegisterCustomer"]["properties"]["name"]["maxLength"] == 200
    assert schemas["CancelOrder"]["properties"]["reason"]["maxLength"] == 1000
    assert schemas["RegisterCustomer"]["properties"]["customerId"]["maxLength"] == 128
    number, text = item["properties"]["unitPrice"]["anyOf"]
    assert (number["minimum"], number["exclusiveMaximum"]) == (0, 10**16)
    # What the schema allows, the model takes; one cent past its largest amount, the model refuses.
    largest = {"sku": "s", "quantity": 1, "unitPrice": "9999999999999999.99"}
    accepted = validate_command({**COMMANDS["AddOrderItem"].example, **largest})
    assert str(accepted.unitPrice) == "9999999999999999.99"
    with pytest.raises(ValidationError, match="unitPrice"):
        validate_command({**COMMANDS["AddOrderItem"].example, "unitPrice": "10000000000000000.00"})
    assert re.fullmatch(text["pattern"].strip("^$"), "9999999999999999.99")
    assert not re.fullmatch(text["pattern"].strip("^$"), "10000000000000000")
