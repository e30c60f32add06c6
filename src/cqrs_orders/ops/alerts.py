"""Alerts: a Teams/Slack-compatible webhook POST (``{"text": ...}``), sent on a lag breach.

The webhook URL carries its own credential, so it is treated as a secret: it comes from
``CQRS_ALERT_WEBHOOK_URL`` (environment or the Databricks secret scope, key ``cqrs-alert-webhook-url``) and
never appears in a message or a log line.
"""

from __future__ import annotations

import json

from cqrs_orders.config import Settings
from cqrs_orders.errors import AlertError

WEBHOOK_SECRET = "CQRS_ALERT_WEBHOOK_URL"
TIMEOUT_SECONDS = 10.0


def webhook_url(settings: Settings) -> str | None:
    """The configured webhook, from the settings or the secret scope; ``None`` when alerts are off."""
    secret = settings.secret(WEBHOOK_SECRET)
    return secret.reveal() if secret else None


def send_webhook(url: str, text: str, timeout: float = TIMEOUT_SECONDS) -> None:
    """POST ``{"text": text}`` as JSON; raise :class:`AlertError` (without the URL) if it is not accepted."""
    import urllib.error  # here: a healthy check never sends, so `lag` does not pay for the import
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise AlertError(
            f"the alert webhook answered HTTP {error.code}; check the webhook URL secret"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or type(error).__name__
        raise AlertError(
            f"the alert webhook could not be reached ({reason}); check the URL and the network"
        ) from None
