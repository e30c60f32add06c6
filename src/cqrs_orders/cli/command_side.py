"""``submit`` and ``relay``: the command side's subcommands. Neither imports Spark, so both start fast."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from datetime import datetime, timezone

from cqrs_orders.config import Settings, positive_seconds
from cqrs_orders.errors import ConfigurationError, RelayBusy
from cqrs_orders.exit_codes import ExitCode

log = logging.getLogger(__name__)


def register(subcommands, common) -> None:
    """Add this area's subcommands; each sets ``run(args, settings) -> exit code``."""
    submit = subcommands.add_parser(
        "submit",
        parents=[common],
        help="run commands against the write store; print one JSON result per command",
        description="Validate and run commands (JSON objects with a 'type', e.g. CreateOrder) against the "
        "write store; accepted commands store their events in the outbox for the relay. Prints one JSON "
        "result per command; exits 0 if all were accepted, 1 if any was rejected.",
        epilog=COMMAND_TYPES,
        formatter_class=_SubmitHelp,
    )
    source = submit.add_mutually_exclusive_group(required=True)
    source.add_argument("command", nargs="?", metavar="JSON", help="one command as a JSON object")
    source.add_argument(
        "--file", metavar="FILE", help="a JSON Lines file, one command per line ('-' = stdin)"
    )
    submit.set_defaults(run=run_submit)

    relay = subcommands.add_parser(
        "relay",
        parents=[common],
        help="publish the outbox to the event bus (drain and exit, or --follow)",
        description="Publish committed events from the write store's outbox to the event bus (the embedded "
        "event log, or Event Hubs through its Kafka endpoint with CQRS_PUBLISHER=kafka), in order, at least "
        "once. Without --follow it drains the outbox, prints how many events it published, and exits. "
        "One relay at a time holds the outbox's lease: a drain that finds it held publishes nothing and "
        "says who holds it; --follow then "
        "stands by and takes over when the holder stops (or, on Cosmos DB, within 30 s of its crash).",
    )
    relay.add_argument("--follow", action="store_true", help="keep polling the outbox until interrupted")
    relay.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="with --follow: the longest wait between two looks at the outbox (1.0); a commit in the local "
        "write store wakes the relay within ~0.1 s anyway",
    )
    relay.add_argument("--batch-size", type=int, default=500, metavar="N", help="events per publish (500)")
    relay.add_argument(
        "--from",
        dest="republish_from",
        type=_moment,
        metavar="TIME",
        help="first publish again every event committed at or after TIME (ISO 8601, UTC unless it says "
        "otherwise, e.g. 2026-03-01T09:00:00Z), for a bus that lost events it had accepted (an outage "
        "longer than its retention: docs/operations.md, 'The bus lost events'); then as without it",
    )
    relay.set_defaults(run=run_relay)


#: Where ``submit --help`` lists the command types (read from their declarations only when help is shown:
#: the commands' models take longer to import than the rest of the command line).
COMMAND_TYPES = object()


class _SubmitHelp(argparse.HelpFormatter):
    """Writes :data:`COMMAND_TYPES` out as the list of declared commands."""

    def _format_text(self, text) -> str:
        if text is COMMAND_TYPES:
            from cqrs_orders.domain.commands import COMMANDS

            text = (
                f"command types: {', '.join(COMMANDS)}. Each one's fields and the events it records: "
                "docs/commands.md."
            )
        return super()._format_text(text)


def _moment(text: str) -> datetime:
    """An argparse type: an ISO 8601 time (a date is its midnight), UTC unless it says otherwise."""
    try:  # Python 3.10 reads no "Z"
        parsed = datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", text.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give ISO 8601, e.g. 2026-03-01T09:00:00Z or 2026-03-01"
        ) from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


#: Commands handed to the store at once (one group commit) by ``submit --file``.
CHUNK_COMMANDS = 1000
_READ_BYTES = 1 << 20


def run_submit(args, settings: Settings) -> int:
    from cqrs_orders import wiring

    handler = wiring.command_handler(settings)
    all_accepted = True
    try:
        chunks = [[args.command]] if args.file is None else _chunks(args.file)
        for chunk in chunks:
            results = handler.handle_many(chunk)
            all_accepted &= all(result.accepted for result in results)
            # Printed only now: a result line means its command is durable (or was rejected).
            sys.stdout.write("".join(result.to_json() + "\n" for result in results))
            sys.stdout.flush()
    finally:
        handler.store.close()
    return ExitCode.OK if all_accepted else ExitCode.REJECTED


def _chunks(name: str):
    """The file's non-blank lines as bytes, in chunks of whatever has arrived (at most CHUNK_COMMANDS).

    Bytes, not text: a line that is not UTF-8 is that line's validation error, not the end of the run.
    ``read1`` returns what a pipe holds without waiting for more, so a producer writing commands one at
    a time to stdin gets each answer as soon as it is durable, while a file is read in large chunks. A line
    over the size limit is answered as soon as it is known to be, and the rest of it is skipped unread
    into memory.
    """
    from cqrs_orders.domain.commands import MAX_COMMAND_BYTES

    try:
        handle = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
    except OSError as error:
        raise ConfigurationError(f"Cannot read the commands file {name}: {error.strerror}") from error
    tail, oversized = b"", False
    with handle:
        while True:
            try:
                data = handle.read1(_READ_BYTES)
            except OSError as error:
                raise ConfigurationError(f"Cannot read the commands file {name}: {error.strerror}") from error
            if not data:
                break
            if oversized:  # the rest of a line already answered as too large: skip to its end
                end = data.find(b"\n")
                if end < 0:
                    continue
                data, oversized = data[end + 1 :], False
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            if len(tail) > MAX_COMMAND_BYTES:  # too large whatever follows: answer it now, hold none of it
                lines.append(tail[: MAX_COMMAND_BYTES + 1])
                tail, oversized = b"", True
            lines = [line for line in lines if line.strip()]
            for start in range(0, len(lines), CHUNK_COMMANDS):
                yield lines[start : start + CHUNK_COMMANDS]
    if tail.strip():
        yield [tail]


def run_relay(args, settings: Settings) -> int:
    from cqrs_orders import wiring

    if args.batch_size < 1:
        raise ConfigurationError("--batch-size must be >= 1.")
    try:
        poll_seconds = positive_seconds(args.poll_seconds)
    except ValueError:
        raise ConfigurationError(
            f"--poll-seconds {args.poll_seconds} must be a positive, finite number of seconds."
        ) from None
    relay = wiring.relay(
        settings,
        batch_size=args.batch_size,
        progress=lambda total: log.info("relay: %d events published so far", total),
        who="cqrs-orders relay" + (" --follow" if args.follow else ""),
    )
    try:
        if args.republish_from is not None:
            try:
                republished = relay.republish(args.republish_from)
            except RelayBusy as busy:  # the rewind did not happen: the operator must stop that relay first
                raise ConfigurationError(
                    f"Nothing was republished: {busy}. Stop that relay (the command API app, or another "
                    "`cqrs-orders relay --follow`), then run this again."
                ) from None
            print(f"published {republished} events (from {args.republish_from:%Y-%m-%dT%H:%M:%SZ} on)")
            if not args.follow:
                return ExitCode.OK
        if not args.follow:
            try:
                print(f"published {relay.drain()} events")
            except RelayBusy as busy:  # not a failure: the holder publishes them
                print(f"published 0 events: {busy}")
            return ExitCode.OK
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            log.info("relay: following the outbox (at least every %g s); Ctrl-C stops", poll_seconds)
            total = relay.follow(stop, poll_seconds)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        print(f"published {total} events")
        return ExitCode.OK
    finally:
        relay.close()
