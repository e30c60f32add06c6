"""Erasure of a customer's personal data: what counts as personal, the marker that replaces it, and the one
rule that masks it in any text the project stores (a state document, an event body, a command).

Erasure here is *rewriting*, not crypto-shredding (docs/architecture.md, "Erasure of personal data"):
every stored copy of the customer's ``name`` and ``email`` is replaced by :data:`MARKER`, and the files
that held the old bytes are removed (SQLite ``secure_delete`` + ``VACUUM`` + a truncated WAL, Delta
``VACUUM``). Ids, amounts, dates and statuses stay, so orders stay countable.

The masking rule is a regular expression over JSON text (:data:`PERSONAL_VALUE`), not a parse and a
re-serialisation, for three reasons: the same pattern runs in Python (the write stores, the event log) and
in Spark (``regexp_replace`` over bronze, the quarantine, and every micro-batch of an erased customer), so
there is one rule; it leaves every other byte of a body as it was (an event's other fields, its key order,
its money strings); and it also masks a body that is not valid JSON any more (a quarantined record),
wherever a ``"name": "..."`` or ``"email": "..."`` pair can still be read in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

#: What an erased personal field reads afterwards, everywhere: a valid name and e-mail for the state
#: models' length rules (so an erased customer's state still loads), and plainly not a person's.
MARKER = "[erased]"

#: The fields of the customer's state (``envelope.CustomerState``) and of its commands that hold personal
#: data. A test holds this equal to the state's text fields other than its id.
PERSONAL_FIELDS = ("name", "email")

#: A JSON member whose key is a personal field and whose value is a JSON string (escapes included).
#: Written in the syntax Python's ``re`` and Java's ``java.util.regex`` (Spark's ``regexp_replace``) read
#: alike.
PERSONAL_VALUE = r'"(' + "|".join(PERSONAL_FIELDS) + r')"(\s*):(\s*)"(?:[^"\\]|\\.)*"'
#: The replacement, in both engines' syntax: the key and spacing as they were, the marker as the value.
_REPLACEMENT_PYTHON = r'"\1"\2:\3"' + MARKER + '"'
#: The same replacement for Spark (Java's ``$n`` group references).
REPLACEMENT_SPARK = '"$1"$2:$3"' + MARKER + '"'

_PERSONAL = re.compile(PERSONAL_VALUE)


def mask_personal(text: str) -> str:
    """``text`` with the value of every personal member (``"name": "..."``, ``"email": "..."``) replaced
    by the marker; every other byte stays."""
    return _PERSONAL.sub(_REPLACEMENT_PYTHON, text)


def holds_personal(text: str) -> bool:
    """Whether ``text`` still has a personal member whose value is not the marker."""
    return any(found.group(0) != found.expand(_REPLACEMENT_PYTHON) for found in _PERSONAL.finditer(text))


@dataclass(frozen=True)
class Erasure:
    """One entry of the erasure registry: which customer, when, why and on whose word.

    ``reason`` is kept as given (a ticket number, a legal basis); it must not itself hold personal data.
    """

    customer_id: str
    erased_at: datetime
    reason: str
    erased_by: str


@dataclass(frozen=True)
class WriteStoreErasure:
    """What a write store rewrote for one erasure: the state, the events and the commands it masked, and the
    personal values it found in them (the lake side searches quarantined bodies for them)."""

    erasure: Erasure
    events: int
    commands: int
    #: Every distinct personal value the store held for the customer (its current and earlier names and
    #: e-mails). Held in memory only, for the lake's search; never written anywhere.
    values: frozenset[str]
    already_erased: bool = False


def personal_values(state: dict) -> set[str]:
    """The personal values (non-empty strings other than the marker) of one state or command object."""
    return {
        value
        for field in PERSONAL_FIELDS
        if isinstance(value := state.get(field), str) and value and value != MARKER
    }
