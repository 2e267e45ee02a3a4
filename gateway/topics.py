"""MQTT topic names of the contract (SPEC section 5), in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    base_topic: str
    gateway_id: str

    @property
    def root(self) -> str:
        return f"{self.base_topic}/{self.gateway_id}"

    @property
    def state(self) -> str:
        return f"{self.root}/state"

    @property
    def info(self) -> str:
        return f"{self.root}/info"

    @property
    def health(self) -> str:
        return f"{self.root}/health"

    def link_state(self, link: str) -> str:
        return f"{self.root}/links/{link}/state"

    def availability(self, unit: str) -> str:
        return f"{self.root}/units/{unit}/availability"

    def position(self, unit: str) -> str:
        return f"{self.root}/units/{unit}/position"

    def message(self, unit: str) -> str:
        return f"{self.root}/units/{unit}/message"

    def alarm(self, unit: str) -> str:
        """Each raise and clear of an alarm of the unit's devices (QoS 1, not retained)."""
        return f"{self.root}/units/{unit}/alarm"

    @property
    def alarms(self) -> str:
        """Every alarm now raised, ``{"alarms": [...]}`` (QoS 1, retained)."""
        return f"{self.root}/alarms"

    @property
    def dispatch(self) -> str:
        return f"{self.root}/tasks/dispatch"

    @property
    def cancel(self) -> str:
        return f"{self.root}/tasks/cancel"

    @property
    def rejected(self) -> str:
        """Dispatch and cancel messages whose task id could not be read."""
        return f"{self.root}/tasks/rejected"

    def task_events(self, task_id: str) -> str:
        return f"{self.root}/tasks/{task_id}/events"

    @property
    def requests(self) -> str:
        """The subscription filter for every request command."""
        return f"{self.root}/request/+"

    def request(self, command: str) -> str:
        return f"{self.root}/request/{command}"

    def response(self, command: str) -> str:
        return f"{self.root}/response/{command}"

    def inbound_filters(self) -> tuple[str, ...]:
        return (self.dispatch, self.cancel, self.requests)
