"""Use cases of the command side: handle a command against a write store, relay the outbox to a bus.

:mod:`cqrs_orders.application.wiring` picks the adapters from :class:`~cqrs_orders.config.Settings`.
"""
