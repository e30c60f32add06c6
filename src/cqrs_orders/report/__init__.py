"""The read models as a self-contained HTML page (``cqrs-orders report``)."""
