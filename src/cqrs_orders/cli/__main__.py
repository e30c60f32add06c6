"""``python -m cqrs_orders.cli``: the same as the ``cqrs-orders`` console script."""

import sys

from cqrs_orders.cli import main

sys.exit(main())
