"""One exception root for the gateway; specific subclasses carry their context."""

from __future__ import annotations


class FieldlinkError(Exception):
    """Root of every error fieldlink raises on purpose."""


class ConfigError(FieldlinkError, ValueError):
    """A configuration value is missing or wrong; ``key`` is the dotted key path."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


class LinkError(FieldlinkError, ConnectionError):
    """A link could not be opened or broke; ``link`` names it."""

    def __init__(self, link: str, reason: str) -> None:
        super().__init__(f"link {link}: {reason}")
        self.link = link
        self.reason = reason
