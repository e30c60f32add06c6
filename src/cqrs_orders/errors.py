"""The one error hierarchy of the project.

Every error a user can meet derives from :class:`CqrsOrdersError`; the CLI prints its message (which says
what to do next) instead of a stack trace. Command rejections carry a stable ``code`` that callers may
branch on.
"""


class CqrsOrdersError(Exception):
    """Base class: an expected failure with a message meant for people."""


class ConfigurationError(CqrsOrdersError):
    """A setting is missing or invalid."""


class SparkUnavailableError(CqrsOrdersError):
    """Spark (or its Delta / Kafka jars) could not be started here."""


class EventLogError(CqrsOrdersError):
    """The embedded event log could not be read or appended."""


class PublishError(CqrsOrdersError):
    """An event bus refused or could not be reached; the outbox keeps the events for a retry."""


class BusReadError(CqrsOrdersError):
    """The event bus could not be read (the lag monitor asks it for its offsets and newest records): the
    monitor cannot vouch for the projection, so it reports a breach of its own."""


class WriteStoreError(CqrsOrdersError):
    """The write store failed for a reason other than a rejected command, and what was asked of it was not
    kept (a transaction rolled back, never begun, or committed into a file that was no longer the store)."""

    code = "WRITE_STORE_UNAVAILABLE"

    def advice(self) -> str:
        """What a command's result says: what happened, what was written, what to do."""
        return f"the write store failed: {self}. This command was not written; send it again later"


class WriteOutcomeUnknown(WriteStoreError):
    """The write store was asked to commit and did not say whether it did (a timeout, a dropped
    connection): the command may or may not be written."""

    code = "WRITE_OUTCOME_UNKNOWN"

    def advice(self) -> str:
        return (
            f"the write store did not confirm the write: {self}. Whether this command was written is "
            "unknown; send it again with the same commandId, which answers its first result if it was"
        )


class RelayLeaseLost(WriteStoreError):
    """This relay's lease on the outbox was taken over (it went unrenewed past its expiry) or could not be
    renewed: the relay stops publishing at once, and its position is not moved; whoever holds the lease now
    publishes from the saved position (at least once, so at worst a batch goes out twice)."""


class RelayBusy(CqrsOrdersError):
    """Another relay holds the outbox's lease: this one published nothing, and the holder publishes what is
    pending. ``holder`` names it; ``until`` is when its lease expires unless renewed (``None``: an OS lock,
    held until the holder's process ends)."""

    def __init__(self, holder: str, until=None):
        self.holder, self.until = holder, until
        expiry = (
            "until its process ends"
            if until is None
            else f"until {until:%H:%M:%S} UTC, renewed while it runs"
        )
        super().__init__(
            f"{holder} holds the outbox lease ({expiry}) and publishes the pending events; "
            "this relay published none"
        )


class CommandRejected(CqrsOrdersError):
    """A command was refused; nothing was written. ``code`` is stable and machine-readable."""

    code = "REJECTED"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ValidationError(CommandRejected):
    code = "VALIDATION_ERROR"


class UnknownCommand(CommandRejected):
    code = "UNKNOWN_COMMAND"


class NotFound(CommandRejected):
    code = "NOT_FOUND"


class AlreadyExists(CommandRejected):
    code = "ALREADY_EXISTS"


class InvalidTransition(CommandRejected):
    code = "INVALID_TRANSITION"


class ConcurrencyConflict(CommandRejected):
    code = "CONCURRENCY_CONFLICT"


class CustomerErased(CommandRejected):
    """The command targets a customer whose personal data was erased (``cqrs-orders erase-customer``): the
    customer stays erased, so nothing is written for it again under its id."""

    code = "CUSTOMER_ERASED"


class PayloadTooLarge(CommandRejected):
    """An HTTP request body over the command size limit, refused before it is read in full."""

    code = "PAYLOAD_TOO_LARGE"


class BatchTooLarge(CommandRejected):
    """An HTTP batch (JSON array) with more commands than the documented limit."""

    code = "BATCH_TOO_LARGE"


class UnsupportedMediaType(CommandRejected):
    """An HTTP request body that is not declared ``application/json``."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class Unauthenticated(CommandRejected):
    """An HTTP request that names no caller where one is required (the command API as a Databricks App,
    whose proxy always forwards the caller's identity): refused before any command ran."""

    code = "UNAUTHENTICATED"


class AlertError(CqrsOrdersError):
    """An alert (webhook) could not be delivered; the breach it was about still stands."""


class QueryError(CqrsOrdersError):
    """A read-side query failed (bad SQL, an unknown table or view, a failed SQL warehouse statement)."""

    code = "READ_SIDE_UNAVAILABLE"


class RemoteRunError(CqrsOrdersError):
    """A Databricks job run (e.g. the command-ingest endpoint) failed or returned no usable result."""


class RebuildError(CqrsOrdersError):
    """A rebuild or its rollback refused to go on (another one running, a projection that would not pause,
    a generation that disagrees with bronze, nothing to roll back); it names what, and what was left as it
    was."""


class CorruptTableError(CqrsOrdersError):
    """A Delta table's transaction log cannot be read (a commit file truncated or overwritten)."""


class QuarantineError(CqrsOrdersError):
    """A quarantine action named records that are not quarantined, or lacked what it needs (a reason);
    nothing was changed."""
