"""The HTTP command and query API (``cqrs-orders serve``): an ASGI app on FastAPI, served by uvicorn.

It adds no domain logic: ``POST /commands`` runs the same command handler as ``cqrs-orders submit``, the
GETs run the read-side queries of :mod:`cqrs_orders.query.api`. Modules: ``status`` (the error-code -> HTTP
status table and the limits), ``intake`` (request body checks), ``encoding`` (JSON out), ``app`` (routes),
``wiring`` (the handler and read models chosen by the settings).
"""
