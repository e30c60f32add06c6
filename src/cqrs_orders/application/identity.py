"""Who sent a command, as far as something other than the command itself can vouch for it.

A command's body may say ``metadata.userId``, but anyone can write anything there: that is a *claim*. The
audit trail (every event's ``metadata``) records instead the :class:`Caller` its entry point established,
and how (``authenticatedBy``), and keeps the body's claim apart as ``claimedUserId``:

* ``databricks-apps``: the Databricks Apps proxy signed the caller in and forwarded who it is in the
  ``X-Forwarded-Email`` / ``X-Forwarded-Preferred-Username`` / ``X-Forwarded-User`` headers (the app is
  reachable only through that proxy, so it can trust them);
* ``forwarded-headers``: the same headers reached a server that is not behind that proxy (a laptop
  ``serve``): recorded as given, and marked so, since nothing vouches for them there;
* ``databricks``: the Databricks identity the process runs as, from its workspace credentials (the
  command-ingest job: its run-as principal; asked by :mod:`cqrs_orders.adapters.workspace_identity`);
* ``os-user``: the operating-system account that ran the process (``cqrs-orders submit`` on a laptop);
* ``none``: nobody is known (a laptop ``serve`` called without the headers); ``userId`` is then null.

The fingerprint of a command (its ``commandId`` retry check) is over the command as given, not over the
caller, so a retry by the same front-end through another replica still answers the first result.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: The headers Databricks Apps sets on every request it forwards, most telling first: the e-mail (a user)
#: or the preferred user name (a user's, or a service principal's application id), else the user id.
FORWARDED_IDENTITY_HEADERS = ("x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-user")

DATABRICKS_APPS = "databricks-apps"
FORWARDED_HEADERS = "forwarded-headers"
DATABRICKS = "databricks"
OS_USER = "os-user"
NONE = "none"

#: The longest identity recorded (a header's value beyond it is cut, and the cut is marked).
MAX_IDENTITY_CHARS = 256


@dataclass(frozen=True)
class Caller:
    """``user_id``: who (``None``: unknown); ``authenticated_by``: what vouches for it (see the module)."""

    user_id: str | None
    authenticated_by: str

    @property
    def known(self) -> bool:
        return self.user_id is not None

    def describe(self) -> str:
        """For logs: ``ada@example.com (databricks-apps)``, or ``anonymous (none)``."""
        return f"{self.user_id or 'anonymous'} ({self.authenticated_by})"


#: A caller nobody vouches for: a laptop ``serve`` called without the identity headers.
ANONYMOUS = Caller(None, NONE)


def from_forwarded_headers(headers: Mapping[str, str], *, behind_databricks_apps: bool) -> Caller | None:
    """The caller the ``X-Forwarded-*`` identity headers name (``headers``: lower-case names), or ``None``
    when there are none. ``behind_databricks_apps`` says whether the platform's proxy set them."""
    for name in FORWARDED_IDENTITY_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            how = DATABRICKS_APPS if behind_databricks_apps else FORWARDED_HEADERS
            return Caller(bounded(value), how)
    return None


def os_user() -> Caller:
    """The operating-system account running this process (``submit``): nobody else vouches for it."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a bare container)
        name = f"uid {os.getuid()}" if hasattr(os, "getuid") else None
    return Caller(name, OS_USER) if name else ANONYMOUS


def bounded(value: str) -> str:
    return value if len(value) <= MAX_IDENTITY_CHARS else value[: MAX_IDENTITY_CHARS - 1] + "…"
