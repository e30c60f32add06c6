"""``POST /commands`` in the OpenAPI document: the body's schema is every declared command's, told apart by
``type``, for one command and for a batch, so a client generated from the document knows each field."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from cqrs_orders.adapters.sqlite_store import SqliteWriteStore
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.domain.commands import COMMANDS
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
    assert body["example"]["type"] in COMMANDS


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
