"""Which unit a device belongs to: the configured directory, and names for strangers."""

from __future__ import annotations

from gateway.config import Config, LinkConfig, implicit_unit_id, normalise_address
from gateway.model import DeviceRef

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
