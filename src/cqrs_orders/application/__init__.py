"""Use cases of the command side: handle a command against a write store, relay the outbox to a bus.

It knows the ports only (:mod:`.ports`); :mod:`cqrs_orders.wiring`, beside the entry points, plugs in the
adapters the settings name.
"""
