"""A command is declared in one place: its class. What is missing from a declaration fails at import, naming
the command; a whole one is run by the handler, listed by the CLI and documented with nothing else to edit.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from cqrs_orders.cli import build_parser
from cqrs_orders.domain import command_reference
from cqrs_orders.domain.aggregates import decide
from cqrs_orders.domain.commands import COMMANDS, validate_command
from cqrs_orders.envelope import EVENT_CATALOG, EventEnvelope
from cqrs_orders.exit_codes import ExitCode

DOCS = Path(__file__).parents[2] / "docs" / "commands.md"

#: A command the project does not ship, declared the way a new one is: one module.
RENAME_CUSTOMER = '''
from typing import Literal

from cqrs_orders.domain.commands.base import Text
from cqrs_orders.domain.commands.customer import CustomerCommand
from cqrs_orders.domain.ids import Id


class RenameCustomer(CustomerCommand):
    """Give a registered customer a new name."""

    type: Literal["RenameCustomer"]
    customerId: Id
    name: Text

    emits = ("CustomerUpdated",)
    example = {"type": "RenameCustomer", "customerId": "cust-1", "name": "Grace"}

    def decide(self, state, now, referenced):
        return "CustomerUpdated", state.model_copy(update={"name": self.name, "updatedAt": now})
'''


@pytest.fixture
def declare(tmp_path):
    """Import a module of command declarations from its source; what it registered is forgotten after."""
    before = dict(COMMANDS)

    def load(source: str, name: str = "scratch_commands"):
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    COMMANDS.clear()
    COMMANDS.update(before)


def test_a_new_command_in_one_module_is_validated_decided_and_recorded(declare, given, handler, store):
    declare(RENAME_CUSTOMER)
    given.customer("cust-1")

    result = handler.handle({"type": "RenameCustomer", "customerId": "cust-1", "name": "Grace"})

    assert result.accepted and result.version == 2
    [*_, entry] = store.pending(100).entries
    event = EventEnvelope.from_json(entry.body)
    assert (event.eventType, event.data.name) == ("CustomerUpdated", "Grace")
    # The rules every command shares hold for it too: it needs an existing customer.
    missing = handler.handle({"type": "RenameCustomer", "customerId": "cust-9", "name": "Grace"})
    assert missing.error["code"] == "NOT_FOUND" and "'cust-9' is not registered" in missing.error["message"]
    assert "RenameCustomer" in command_reference.markdown()
    assert command_reference.schema("RenameCustomer")["examples"] == [
        {"type": "RenameCustomer", "customerId": "cust-1", "name": "Grace"}
    ]


_DECISION = RENAME_CUSTOMER[RENAME_CUSTOMER.index("    def decide") :]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (_DECISION, "", r"RenameCustomer declares no decide\(\.\.\.\)"),
        ('    emits = ("CustomerUpdated",)\n', "", "RenameCustomer declares no emits"),
        (
            '"CustomerUpdated",)',
            '"CustomerRenamed",)',
            "RenameCustomer emits 'CustomerRenamed', which the envelope",
        ),
        (
            '"CustomerUpdated",)',
            '"OrderShipped",)',
            "RenameCustomer acts on a Customer but emits 'OrderShipped'",
        ),
        ('Literal["RenameCustomer"]', 'Literal["Rename"]', "RenameCustomer declares type 'Rename'"),
        ("    customerId: Id\n", "", "RenameCustomer acts on a Customer but has no customerId field"),
        (
            '    example = {"type": "RenameCustomer", "customerId": "cust-1", "name": "Grace"}\n',
            "",
            "RenameCustomer declares no example",
        ),
        (
            '"name": "Grace"}',
            '"name": " "}',
            "RenameCustomer's example is refused by its own declaration: "
            "RenameCustomer is invalid: name: must be a non-blank string",
        ),
        (
            'example = {"type": "RenameCustomer"',
            'example = {"type": "UpdateCustomer"',
            "RenameCustomer's example has type 'UpdateCustomer'",
        ),
    ],
    ids=[
        "no decision",
        "no events",
        "unknown event",
        "another aggregate's event",
        "type not its name",
        "no id",
        "no example",
        "an example it refuses",
        "an example of another command",
    ],
)
def test_an_incomplete_declaration_fails_at_import_naming_the_command(declare, old, new, message):
    assert old in RENAME_CUSTOMER
    with pytest.raises(TypeError, match=message):
        declare(RENAME_CUSTOMER.replace(old, new))
    assert "RenameCustomer" not in COMMANDS


def test_a_command_declared_twice_is_refused(declare):
    with pytest.raises(TypeError, match="ConfirmOrder is declared twice"):
        declare(
            """
            from typing import Literal
            from cqrs_orders.domain.commands.order import OrderCommand
            from cqrs_orders.domain.ids import Id

            class ConfirmOrder(OrderCommand):
                type: Literal["ConfirmOrder"]
                orderId: Id
                emits = ("OrderConfirmed",)
                example = {"type": "ConfirmOrder", "orderId": "o-1"}

                def decide(self, state, now, referenced):
                    return "OrderConfirmed", state
            """
        )


def test_a_decision_recording_an_undeclared_event_is_a_bug_not_an_event(declare, given, store):
    declare(RENAME_CUSTOMER.replace('return "CustomerUpdated"', 'return "CustomerRegistered"'))
    given.customer("cust-1")
    customer = store.load("cust-1")
    command = validate_command({"type": "RenameCustomer", "customerId": "cust-1", "name": "Grace"})
    with pytest.raises(TypeError, match="RenameCustomer recorded 'CustomerRegistered'"):
        decide(command, customer, now=customer.state.updatedAt)


def test_every_command_records_only_cataloged_events_of_its_own_aggregate():
    for command in COMMANDS.values():
        assert command.emits, command
        assert {EVENT_CATALOG[event] for event in command.emits} == {command.aggregate}


def test_the_command_reference_is_generated_from_the_declarations():
    assert DOCS.read_text(encoding="utf-8") == command_reference.markdown(), (
        "docs/commands.md is out of date: .venv/bin/python -m cqrs_orders.domain.command_reference "
        "> docs/commands.md"
    )
    text = DOCS.read_text(encoding="utf-8")
    for name, command in COMMANDS.items():
        assert f"## {name}\n" in text
        assert all(f"`{event}`" in text for event in command.emits)


def test_submit_help_lists_every_command_type(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["submit", "--help"])

    listed = " ".join(capsys.readouterr().out.split())
    assert f"command types: {', '.join(COMMANDS)}." in listed


def test_commands_lists_every_type_with_what_it_does_and_its_required_fields(cli):
    result = cli("commands")

    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["TYPE", "REQUIRED", "DESCRIPTION"]
    assert [row.split()[0] for row in rows] == list(COMMANDS)
    create = next(row for row in rows if row.startswith("CreateOrder "))
    assert " customerId, items " in create and create.endswith(COMMANDS["CreateOrder"].__doc__)
    confirm = next(row for row in rows if row.startswith("ConfirmOrder "))
    assert confirm.split(None, 2)[1:] == ["orderId", "Confirm a Created order."]


def test_commands_json_prints_a_standalone_json_schema(cli):
    result = cli("commands", "--json", "CreateOrder")

    assert result.exit_code == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["properties"]["type"]["const"] == "CreateOrder"
    assert schema["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
    assert set(schema["$defs"]) == {"Item", "CommandMetadata"}  # every reference resolves inside it
    assert schema["examples"] == [COMMANDS["CreateOrder"].example]


def test_commands_json_of_an_unknown_type_is_one_line_naming_the_known_ones(cli):
    result = cli("commands", "--json", "CreateOrders")

    assert result.exit_code == ExitCode.USAGE and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("cqrs-orders commands: no command is called 'CreateOrders'; known commands: ")
    assert all(name in line for name in COMMANDS)


def test_commands_help_says_what_it_lists_and_where_the_rest_is(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["commands", "--help"])

    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--json TYPE" in shown and "JSON Schema" in shown and "docs/commands.md" in shown
