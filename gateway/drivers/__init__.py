"""Drivers: protocol messages in, domain events out (and commands back to the radio).

One package per protocol, ``gateway/drivers/<p>/``: ``spec.py`` (what the protocol is to
configuration and dispatch, :class:`~gateway.drivers.spec.ProtocolSpec`) and ``driver.py``
(the :class:`~gateway.drivers.base.Driver`). :mod:`gateway.drivers.registry` lists them, one
line per protocol. A driver never touches MQTT: it reports to an
:class:`~gateway.drivers.base.EventSink`.

This package imports nothing on its own, so configuration can read the specs without
loading any driver.
"""
