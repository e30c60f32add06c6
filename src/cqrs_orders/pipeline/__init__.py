"""The event-processing pipeline: bus records -> bronze (expectations, quarantine) -> silver read models and
event history (exactly-once MERGE) -> gold metrics, with progress recording, a runner and a rebuild."""
