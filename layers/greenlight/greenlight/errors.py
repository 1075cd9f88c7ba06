"""The two kinds of failure a caller must tell apart: retry later, or never."""

from __future__ import annotations


class GreenlightError(Exception):
    """Base class of every error Greenlight raises on purpose."""


class PermanentError(GreenlightError):
    """Bad input or configuration: retrying the same request cannot succeed."""


class TemporaryError(GreenlightError):
    """A transient condition: the same request may succeed after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 5.0) -> None:
        super().__init__(message)
        self.delay = delay


class ConfigError(PermanentError):
    """The app configuration file is missing or invalid."""


class EventError(PermanentError):
    """An event that does not have the shape its source promises."""


class SignatureError(PermanentError):
    """A webhook delivery whose signature is missing or wrong."""


class SettingsError(PermanentError):
    """A required environment variable is missing or malformed."""
