"""Who is calling: the caller of a request, from the identity headers Databricks Apps forwards.

As a Databricks App the API is reachable only through the platform's proxy, which signs every caller in
(only principals with CAN_USE on the app get through) and sets ``X-Forwarded-Email``,
``X-Forwarded-Preferred-Username`` and ``X-Forwarded-User`` to who it signed in. So there the headers are
the caller, and a request without them did not come through the proxy: it is refused (401
``UNAUTHENTICATED``), and no event ever records an unauthenticated caller.

On a laptop nobody signs callers in. ``serve`` takes the same headers if a request has them (recorded as
``forwarded-headers``: nothing vouches for them), and otherwise records the caller as unknown
(``authenticatedBy: none``); it says so with a warning when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_orders.application import identity
from cqrs_orders.application.identity import Caller
from cqrs_orders.errors import Unauthenticated

_HEADER_NAMES = tuple(name.encode() for name in identity.FORWARDED_IDENTITY_HEADERS)

#: What `serve` logs at start when nothing vouches for its callers.
UNAUTHENTICATED_WARNING = (
    "serving WITHOUT authentication: a request without the X-Forwarded-Email/-User headers is recorded as "
    "an anonymous caller (authenticatedBy: none), and those headers are taken on trust "
    "(authenticatedBy: forwarded-headers). Bind to 127.0.0.1 only, or run it as the Databricks App "
    "(CQRS_CALLER_IDENTITY=required refuses requests without a caller)"
)


@dataclass(frozen=True)
class CallerPolicy:
    """``required``: a request must name its caller (else :class:`Unauthenticated`); ``behind_proxy``: the
    headers were set by the Databricks Apps proxy (as a Databricks App)."""

    required: bool = False
    behind_proxy: bool = False

    @classmethod
    def for_settings(cls, settings) -> CallerPolicy:
        """Required as a Databricks App (``DATABRICKS_APP_NAME`` set) or with ``CQRS_CALLER_IDENTITY=
        required``; the headers count as the proxy's only where the platform runs the app."""
        return cls(
            required=settings.caller_identity == "required",
            behind_proxy=settings.as_databricks_app,
        )

    def caller_of(self, headers: dict[bytes, bytes]) -> Caller:
        """The caller of a request (``headers``: the ASGI scope's, names in lower case)."""
        forwarded = {
            name.decode(): headers[name].decode("utf-8", "replace")
            for name in _HEADER_NAMES
            if name in headers
        }
        caller = identity.from_forwarded_headers(forwarded, behind_databricks_apps=self.behind_proxy)
        if caller is not None:
            return caller
        if self.required:
            raise Unauthenticated(
                "no caller identity: this API takes requests only through the Databricks Apps proxy, which "
                "signs the caller in and sets X-Forwarded-Email; nothing was run"
            )
        return identity.ANONYMOUS


#: Callers may be anonymous, and the headers are nobody's word: a laptop's ``serve`` (and the tests').
UNVERIFIED = CallerPolicy()
