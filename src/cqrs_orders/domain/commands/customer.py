"""The Customer aggregate's commands: register a customer, change its name or email."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import pydantic

from cqrs_orders.domain.commands.base import Command, Decision, Email, State, Text
from cqrs_orders.domain.ids import Id
from cqrs_orders.envelope import AggregateType, CustomerState


class CustomerCommand(Command):
    """A command on one customer (``customerId``)."""

    aggregate = AggregateType.CUSTOMER
    already_exists = "customer {id!r} is already registered"
    missing = "customer {id!r} is not registered; register it first"


class RegisterCustomer(CustomerCommand):
    """Register a new customer."""

    type: Literal["RegisterCustomer"]
    customerId: Id
    name: Text
    email: Email

    creates = True
    emits = ("CustomerRegistered",)
    example = {
        "type": "RegisterCustomer",
        "commandId": "cmd-1",
        "customerId": "cust-1",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
    }

    def decide(self, state: None, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        registered = CustomerState(
            customerId=self.customerId, name=self.name, email=self.email, createdAt=now, updatedAt=now
        )
        return "CustomerRegistered", registered


class UpdateCustomer(CustomerCommand):
    """Change a registered customer's name, email or both (give at least one)."""

    type: Literal["UpdateCustomer"]
    customerId: Id
    name: Text | None = None
    email: Email | None = None

    emits = ("CustomerUpdated",)
    example = {
        "type": "UpdateCustomer",
        "commandId": "cmd-2",
        "customerId": "cust-1",
        "email": "ada@example.org",
    }

    @pydantic.model_validator(mode="after")
    def _changes_something(self) -> UpdateCustomer:
        if self.name is None and self.email is None:
            raise ValueError("give at least one of name, email")
        return self

    def decide(self, state: CustomerState, now: datetime, referenced: Mapping[str, State | None]) -> Decision:
        changes = {"updatedAt": now}
        if self.name is not None:
            changes["name"] = self.name
        if self.email is not None:
            changes["email"] = self.email
        return "CustomerUpdated", state.model_copy(update=changes)
