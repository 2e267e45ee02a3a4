"""What a configuration allows but should not: printed by ``check-config``, logged by ``run``."""

from __future__ import annotations

from gateway.config.model import Config


def config_warnings(cfg: Config) -> list[str]:
    """What is allowed but unsafe: ``check-config`` prints these, ``run`` logs them."""
    warnings = []
    if cfg.mqtt.tls_insecure:
        warnings.append(
            "mqtt.tls_insecure: the broker's certificate is not verified; anyone on the path"
            " can read and forge tasks (set ca_file instead)"
        )
    path = cfg.mqtt.password_file
    if path is not None:
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & 0o007:
            warnings.append(
                f"mqtt.password_file: {path} is readable by every user (mode {mode & 0o777:o});"
                " chmod 600 (or 640 with the service's group)"
            )
    return warnings
