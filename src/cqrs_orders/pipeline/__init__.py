"""The event-processing pipeline: bus records -> bronze (expectations, quarantine) -> silver read models
(exactly-once MERGE; the event history a view over bronze) -> gold metrics, with progress recording, a
runner and a rebuild."""
