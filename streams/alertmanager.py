"""Push alerts to Alertmanager's v2 API; undelivered ones wait for the next try."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from tollmon.alerting import AlertBook, alertmanager_payload

log = logging.getLogger(__name__)


class AlertmanagerPusher:
    """Sends what the book says is due; a failed push leaves the book unchanged."""

    def __init__(self, url: str, book: AlertBook, clock: Callable[[], float]) -> None:
        self._endpoint = url.rstrip("/") + "/api/v2/alerts"
        self._book = book
        self._clock = clock
        self._client = httpx.AsyncClient(timeout=5.0)
        self._failing = False

    async def push(self) -> int:
        """Send the due alerts; returns how many were delivered."""
        now_s = self._clock()
        due = self._book.due(now_s)
        if not due:
            return 0
        body = [alertmanager_payload(alert, now_s) for alert in due]
        try:
            response = await self._client.post(self._endpoint, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            if not self._failing:
                log.warning("Alertmanager push failed (%s); will retry", exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("Alertmanager reachable again; delivered %d alerts", len(due))
        self._failing = False
        self._book.delivered(due, now_s)
        return len(due)

    async def close(self) -> None:
        await self._client.aclose()
