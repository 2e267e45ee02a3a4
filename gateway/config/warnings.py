"""What a configuration allows but should not: printed by ``check-config``, logged by ``run``."""

from __future__ import annotations

import ipaddress

from gateway.config.model import Config


def config_warnings(cfg: Config) -> list[str]:
    """What is allowed but unsafe: ``check-config`` prints these, ``run`` logs them."""
    warnings = []
    if cfg.mqtt.tls_insecure:
        warnings.append(
            "mqtt.tls_insecure: the broker's certificate is not verified; anyone on the path"
            " can read and forge tasks (set ca_file instead)"
        )
    for key, path in (
        ("mqtt.password_file", cfg.mqtt.password_file),
        ("http.password_file", cfg.http.password_file),
    ):
        if path is not None:
            try:
                mode = path.stat().st_mode
            except OSError:
                mode = 0
            if mode & 0o007:
                warnings.append(
                    f"{key}: {path} is readable by every user (mode {mode & 0o777:o});"
                    " chmod 600 (or 640 with the service's group)"
                )
    http = cfg.http
    if http.enabled and not http.auth and not _loopback(http.host):
        warnings.append(
            f"http.listen: {http.listen} serves the status page and metrics beyond this machine"
            " with no password; set http.username and http.password_file, or listen on 127.0.0.1"
        )
    return warnings


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
