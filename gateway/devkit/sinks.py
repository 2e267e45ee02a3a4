"""Event sinks for tests and benchmarks: a driver runs against one of these instead of the
gateway core when what it reports is all that matters."""

from __future__ import annotations

from gateway.model import Alarm, DeviceRef, Position, TextFromUnit, UnitAnswer

__all__ = ["CountingSink", "RecordingSink"]


class RecordingSink:
    """An :class:`~gateway.drivers.base.EventSink` that keeps everything it is told, in order
    per kind."""

    def __init__(self) -> None:
        self.heard_log: list[DeviceRef] = []
        self.offline_log: list[DeviceRef] = []
        self.positions: list[Position] = []
        self.texts: list[TextFromUnit] = []
        self.answers: list[UnitAnswer] = []
        self.alarms: list[Alarm] = []

    def heard(self, device: DeviceRef) -> None:
        self.heard_log.append(device)

    def offline(self, device: DeviceRef) -> None:
        self.offline_log.append(device)

    def position(self, position: Position) -> None:
        self.positions.append(position)

    def text(self, text: TextFromUnit) -> None:
        self.texts.append(text)

    def answer(self, answer: UnitAnswer) -> None:
        self.answers.append(answer)

    def alarm(self, alarm: Alarm) -> None:
        self.alarms.append(alarm)


class CountingSink:
    """An :class:`~gateway.drivers.base.EventSink` that only counts: the cheapest a driver's
    output can be taken, for measuring the driver itself."""

    def __init__(self) -> None:
        self.events = 0

    def heard(self, device: DeviceRef) -> None:
        self.events += 1

    def offline(self, device: DeviceRef) -> None:
        self.events += 1

    def position(self, position: Position) -> None:
        self.events += 1

    def text(self, text: TextFromUnit) -> None:
        self.events += 1

    def answer(self, answer: UnitAnswer) -> None:
        self.events += 1

    def alarm(self, alarm: Alarm) -> None:
        self.events += 1
