"""The composition root: the command handler and the relay, assembled from the adapters the settings name.

It sits beside the entry points (:mod:`cqrs_orders.cli`, :mod:`cqrs_orders.http`, the jobs' notebooks),
the only code that knows both the application and the adapters.
"""

from __future__ import annotations

from cqrs_orders.adapters.chosen import publisher, write_store
from cqrs_orders.application.handler import CommandHandler
from cqrs_orders.application.relay import Relay
from cqrs_orders.config import Settings

__all__ = ["command_handler", "publisher", "relay", "write_store"]


def command_handler(settings: Settings) -> CommandHandler:
    return CommandHandler(write_store(settings))


def relay(settings: Settings, *, batch_size: int = 500, progress=None, who: str = "relay") -> Relay:
    """A relay with a store and a publisher of its own (``who`` names it in the outbox lease)."""
    store, bus = write_store(settings), publisher(settings)
    return Relay(store, bus, batch_size=batch_size, progress=progress, who=who)
