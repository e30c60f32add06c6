"""``python -m cqrs_orders.cli``: the same as the ``cqrs-orders`` console script."""

from cqrs_orders.cli import run

run()
