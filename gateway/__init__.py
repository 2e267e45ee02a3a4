"""fieldlink: field radios and GPS trackers to MQTT."""

__version__ = "0.1.0"
