"""Which unit a device belongs to: the configured directory, and names for strangers."""

from __future__ import annotations

import logging

from gateway.config import Config, LinkConfig, implicit_unit_id, normalise_address
from gateway.logs import RateLimitedLog
from gateway.model import DeviceRef

log = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL_S = 60.0

CACHE_MAX = 100_000
"""Resolved devices remembered; beyond this (a flood of strangers) each is resolved afresh."""


class UnitDirectory:
    """Resolves a device heard on a link to a unit id, configured or not (nothing is dropped)."""

    def __init__(self, config: Config) -> None:
        self._links = {link.name: link for link in config.links}
        self._by_device: dict[DeviceRef, str] = {}
        for unit in config.units:
            for device in unit.devices:
                self._by_device[device] = unit.id
        for link in config.links:
            self._by_device[DeviceRef(link.name)] = link.unit or implicit_unit_id(
                DeviceRef(link.name)
            )
        self._cache: dict[DeviceRef, str] = {}
        self._admitted: dict[DeviceRef, str] = {}  # devices admit() said yes to (bounded)
        self._last_admitted: tuple[DeviceRef | None, str] = (None, "")
        self._configured = frozenset(self._by_device.values())
        self._max_implicit = config.gateway.max_implicit_units
        self._implicit: set[str] = set()
        self.implicit_refused = 0
        self._refusal_log = RateLimitedLog(log, REFUSAL_LOG_INTERVAL_S)

    @property
    def implicit_units(self) -> int:
        """Units made for devices nobody listed, since the start."""
        return len(self._implicit)

    def admit(self, device: DeviceRef) -> str | None:
        """The unit of ``device``, or None for a stranger beyond ``gateway.max_implicit_units``
        (counted, and logged at most once a minute): what strangers can make is bounded."""
        # A device admitted once is admitted for good (configured and implicit units are
        # never forgotten), so its answer is kept: by identity for the last one (a driver
        # reports one link's device with the same object), else by value.
        last_device, last_unit = self._last_admitted
        if device is last_device:
            return last_unit
        unit = self._admitted.get(device)
        if unit is not None:
            self._last_admitted = (device, unit)
            return unit
        unit = self.resolve(device)
        if unit in self._configured or unit in self._implicit:
            self._remember(device, unit)
            return unit
        if len(self._implicit) >= self._max_implicit:
            self.implicit_refused += 1
            self._refusal_log.warning(
                "%s heard but not listed, and %d implicit units exist already"
                " (gateway.max_implicit_units); not published",
                device,
                len(self._implicit),
            )
            return None
        self._implicit.add(unit)
        self._remember(device, unit)
        return unit

    def _remember(self, device: DeviceRef, unit: str) -> None:
        if len(self._admitted) < CACHE_MAX:
            self._admitted[device] = unit
        self._last_admitted = (device, unit)

    def link(self, name: str) -> LinkConfig | None:
        return self._links.get(name)

    def resolve(self, device: DeviceRef) -> str:
        unit = self._cache.get(device)
        if unit is not None:
            return unit
        link = self._links.get(device.link)
        normal = device
        if device.address and link is not None:
            try:
                normal = DeviceRef(device.link, normalise_address(link.protocol, device.address))
            except ValueError:
                normal = device  # an address the config would refuse still names a stranger
        unit = self._by_device.get(normal) or implicit_unit_id(normal)
        if len(self._cache) < CACHE_MAX:
            self._cache[device] = unit
        return unit
