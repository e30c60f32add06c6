"""cqrs-orders: CQRS on the lakehouse.

Layers: ``domain`` (pure rules), ``application`` (command handling, relay), ``adapters`` (write stores,
event buses), ``pipeline`` (Spark projections), ``query`` and ``ops`` (read side), ``cli`` (entry point).
"""

__version__ = "0.1.0"
