"""A command is declared in one place: its class. What is missing from a declaration fails at import, naming
the command; a whole one is run by the handler, listed by the CLI and documented with nothing else to edit.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from cqrs_orders.cli import build_parser
from cqrs_orders.domain import command_reference
from cqrs_orders.domain.aggregates import decide
from cqrs_orders.domain.commands import COMMANDS, validate_command
from cqrs_orders.envelope import EVENT_CATALOG, EventEnvelope

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
    ],
    ids=[
        "no decision",
        "no events",
        "unknown event",
        "another aggregate's event",
        "type not its name",
        "no id",
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
