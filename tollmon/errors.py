"""The one error root of tollmon and its few meaningful subclasses."""

from __future__ import annotations


class TollmonError(Exception):
    """Base of every error tollmon raises on purpose."""


class ConfigError(TollmonError):
    """A configuration file or setting is invalid; carries every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listing = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} error(s)\n{listing}")


class InvalidEventError(TollmonError):
    """An input message that cannot be accepted; `reason` is a short metric-safe code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class StackError(TollmonError):
    """A local service (broker, Prometheus, Alertmanager) is missing or unhealthy."""
