"""Moved to :mod:`gateway.devkit.broker`; this name stays until the benchmarks follow."""

from gateway.devkit.broker import BrokerUnavailable, Mosquitto, free_port, local_broker

__all__ = ["BrokerUnavailable", "Mosquitto", "free_port", "local_broker"]
