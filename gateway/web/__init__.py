"""The operator's view: Prometheus metrics and the live status page, served by the daemon."""

from gateway.web.server import StatusServer, basic_auth_header

__all__ = ["StatusServer", "basic_auth_header"]
