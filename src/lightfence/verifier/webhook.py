"""Optional alert webhook: each new alert is POSTed as JSON, best effort, off the request path."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import httpx

from lightfence.verifier.logs import log


class Webhook:
    def __init__(self, url: str, timeout_s: float = 5.0, *, wrap: str = "alert") -> None:
        """POSTs `{wrap: document}` for each document sent."""
        self.url, self.timeout_s, self.wrap = url, timeout_s, wrap
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._run, name="lightfence-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log("webhook.dropped", logging.WARNING, alert_id=alert.get("id"), reason="queue full")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self.timeout_s + 1)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while (alert := self._queue.get()) is not None:
                try:
                    resp = client.post(self.url, json={self.wrap: alert})
                    resp.raise_for_status()
                except httpx.HTTPError as exc:
                    # Alerts stay in the database and the API; the webhook is a convenience.
                    log("webhook.failed", logging.WARNING, alert_id=alert.get("id"), error=str(exc))
