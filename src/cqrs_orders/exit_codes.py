"""The exit codes of every ``cqrs-orders`` subcommand, defined once.

A Databricks wheel task fails when its process exits non-zero, so these codes are also how a job run reports
a rejected command or a lag breach to the job's ``email_notifications``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: At least one command was rejected (its result line says why).
    REJECTED = 1
    #: Bad usage or configuration; the one-line message says what to do.
    USAGE = 2
    #: The lag monitor found a read model past its threshold.
    LAG_BREACH = 3
    #: A bug: an error the code did not expect (sysexits' EX_SOFTWARE); rerun with -v for the traceback.
    INTERNAL_ERROR = 70
    #: Ctrl-C (SIGINT), the shell's convention of 128 + the signal number.
    INTERRUPTED = 130
