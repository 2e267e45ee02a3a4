"""A MOTOTRBO control station with subscriber radios, on loopback UDP, for tests and the demo.

Each radio lives at its own address ``<cai>.(id>>16).((id>>8)&255).(id&255)``: with ``cai = 127``
that is a loopback address Linux routes without privileges. Every radio binds the ARS, TMS and
LRRP ports on its address and talks to the gateway's ports, as a control station forwarding to
a PC does. Built from the project's own codecs (:mod:`protocols.mototrbo`).

What a radio does: registers (ARS, retried until answered, like a real radio), answers
location requests (immediate, and triggered: a report every interval along its route, one on
emergency), acks texts (or not), replies as a person would after a delay, sends an emergency
on demand, and misbehaves on demand (truncated datagrams, wrong lengths, a repeated sequence
number).

Use it in-process (``async with ControlStation([...]) as station:``) or run it:
``python -m firmware_stubs.mototrbo_radio --radios 1001,1002 --gateway 127.0.0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from protocols.mototrbo import MototrboError, ars, lrrp, radio_ip, tms

__all__ = ["ControlStation", "SubscriberRadio", "main"]

log = logging.getLogger(__name__)

Service = Literal["ars", "tms", "lrrp"]
ARS_RETRY_S = 2.0
"""A radio repeats its registration this often until it is answered."""
METRES_PER_DEGREE = 111_320.0


@dataclass
class SubscriberRadio:
    """One subscriber radio's behaviour."""

    radio_id: int
    route: Sequence[tuple[float, float]] = ((31.2304, 121.4737),)
    """Positions reported in turn, one per report."""
    ack: Literal["always", "never"] = "always"
    reply: str | None = None
    """What the person answers to a text, after ``reply_delay_s``."""
    reply_delay_s: float = 0.2
    register: bool = True
    """Register when the station starts."""
    speed_kmh: float = 36.0
    course_deg: float = 90.0
    altitude_m: float = 12.5


@dataclass
class _RadioState:
    config: SubscriberRadio
    ip: str
    transports: dict[Service, asyncio.DatagramTransport] = field(default_factory=dict)
    registered: bool = False
    next_sn: int = 0
    step: int = 0
    triggers: dict[bytes, asyncio.Task[None]] = field(default_factory=dict)
    emergency_request: bytes | None = None
    texts: list[str] = field(default_factory=list)
    """Texts received from the gateway (their bodies)."""
    text_sns: list[int | None] = field(default_factory=list)
    """Their sequence numbers."""
    acks: list[int | None] = field(default_factory=list)
    """Sequence numbers the gateway acked."""
    text_times: list[float] = field(default_factory=list)
    """When each text arrived (:func:`time.monotonic`), for benchmarks."""
    ack_times: list[float] = field(default_factory=list)
    """When each ack to the gateway was sent (:func:`time.monotonic`)."""
    requests: list[lrrp.LrrpRequest] = field(default_factory=list)
    ars_answers: list[ars.ArsResponse] = field(default_factory=list)
    last_text: bytes = b""


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self, handle: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._handle = handle

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._handle(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("stub udp error: %s", exc)


class ControlStation:
    """Subscriber radios behind a control station, talking to a gateway on ``gateway_host``."""

    def __init__(
        self,
        radios: Sequence[SubscriberRadio],
        *,
        gateway_host: str = "127.0.0.1",
        ars_port: int = 4005,
        tms_port: int = 4007,
        lrrp_port: int = 4001,
        cai: int = 127,
        ars_retry_s: float = ARS_RETRY_S,
    ) -> None:
        self.gateway_host = gateway_host
        self.ports: dict[Service, int] = {"ars": ars_port, "tms": tms_port, "lrrp": lrrp_port}
        self.cai = cai
        self.ars_retry_s = ars_retry_s
        self.radios = {r.radio_id: _RadioState(r, radio_ip(r.radio_id, cai)) for r in radios}
        self._tasks: set[asyncio.Task[None]] = set()
        self.bad_input = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> ControlStation:
        loop = asyncio.get_running_loop()
        try:
            for state in self.radios.values():
                for service, port in self.ports.items():
                    handler = self._handler(state, service)
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda handler=handler: _Inbox(handler),  # type: ignore[misc]
                        local_addr=(state.ip, port),
                    )
                    state.transports[service] = transport
        except OSError:
            await self.stop()
            raise
        for state in self.radios.values():
            if state.config.register:
                self.register(state.config.radio_id)
        return self

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for state in self.radios.values():
            for transport in state.transports.values():
                transport.close()
            state.transports.clear()
            state.triggers.clear()

    async def __aenter__(self) -> ControlStation:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _send(self, state: _RadioState, service: Service, data: bytes) -> None:
        transport = state.transports.get(service)
        if transport is not None and not transport.is_closing():
            transport.sendto(data, (self.gateway_host, self.ports[service]))

    # -- what a person or the test does -----------------------------------------------------

    def register(self, radio_id: int) -> None:
        """Send ARS registrations until the gateway answers."""
        state = self.radios[radio_id]
        state.registered = False
        self._spawn(self._register(state))

    async def _register(self, state: _RadioState) -> None:
        frame = ars.encode(ars.ArsRegistration(str(state.config.radio_id)))
        while not state.registered:
            self._send(state, "ars", frame)
            await asyncio.sleep(self.ars_retry_s)

    def refresh(self, radio_id: int) -> None:
        state = self.radios[radio_id]
        event = ars.ArsEvent.REFRESH
        self._send(state, "ars", ars.encode(ars.ArsRegistration(str(radio_id), event=event)))

    def deregister(self, radio_id: int) -> None:
        """The radio is switched off: deregistration, and its triggers stop."""
        state = self.radios[radio_id]
        state.registered = False
        self._send(state, "ars", ars.encode(ars.ArsDeregistration()))
        for task in state.triggers.values():
            task.cancel()
        state.triggers.clear()
        state.emergency_request = None

    def send_text(
        self,
        radio_id: int,
        text: str,
        *,
        subject: str = "",
        sn: int | None = None,
        ack_requested: bool = True,
    ) -> int:
        """The person sends ``text``; returns its sequence number."""
        state = self.radios[radio_id]
        if sn is None:
            sn = state.next_sn
            state.next_sn = (state.next_sn + 1) % (tms.MAX_SN + 1)
        frame = tms.encode_text(text, sn, ack_requested=ack_requested, subject=subject)
        state.last_text = frame
        self._send(state, "tms", frame)
        return sn

    def repeat_last_text(self, radio_id: int) -> None:
        """Send the last text again with the same sequence number (as if our ack was lost)."""
        state = self.radios[radio_id]
        self._send(state, "tms", state.last_text)

    def emergency(self, radio_id: int) -> bool:
        """The emergency button: a report for the emergency trigger, if one is armed."""
        state = self.radios[radio_id]
        if state.emergency_request is None:
            return False
        self._report(state, lrrp.DocId.TRIGGERED_LOCATION_REPORT, state.emergency_request)
        return True

    def send_raw(self, radio_id: int, service: Service, data: bytes) -> None:
        """Misbehave: send any bytes on a service."""
        self._send(self.radios[radio_id], service, data)

    def send_truncated(self, radio_id: int, service: Service) -> None:
        """A datagram cut short."""
        sample = {
            "ars": ars.encode(ars.ArsRegistration(str(radio_id))),
            "tms": tms.encode_text("截断", 1),
            "lrrp": self._report_bytes(
                self.radios[radio_id], lrrp.DocId.TRIGGERED_LOCATION_REPORT, b"\x01"
            ),
        }[service]
        self.send_raw(radio_id, service, sample[: len(sample) // 2])

    def send_wrong_length(self, radio_id: int, service: Service) -> None:
        """A datagram whose length field says two bytes more than follow."""
        if service == "lrrp":
            good = self._report_bytes(
                self.radios[radio_id], lrrp.DocId.TRIGGERED_LOCATION_REPORT, b"\x01"
            )
            bad = good[:1] + bytes([good[1] + 2]) + good[2:]
        else:
            good = tms.encode_text("长度", 2) if service == "tms" else ars.encode(ars.ArsQuery())
            bad = (int.from_bytes(good[:2], "big") + 2).to_bytes(2, "big") + good[2:]
        self.send_raw(radio_id, service, bad)

    # -- what arrives from the gateway --------------------------------------------------------

    def _handler(
        self, state: _RadioState, service: Service
    ) -> Callable[[bytes, tuple[str, int]], None]:
        def handle(data: bytes, addr: tuple[str, int]) -> None:
            try:
                if service == "ars":
                    self._on_ars(state, data)
                elif service == "tms":
                    self._on_tms(state, data)
                else:
                    self._on_lrrp(state, data)
            except MototrboError as exc:
                self.bad_input += 1
                log.warning(
                    "radio %d: bad %s from the gateway: %s", state.config.radio_id, service, exc
                )

        return handle

    def _on_ars(self, state: _RadioState, data: bytes) -> None:
        message = ars.decode(data).message
        if isinstance(message, ars.ArsResponse):
            state.ars_answers.append(message)
            state.registered = True  # answered (a failure also stops the retries)
        elif isinstance(message, ars.ArsQuery):
            self._send(state, "ars", ars.encode(ars.ArsResponse(True)))

    def _on_tms(self, state: _RadioState, data: bytes) -> None:
        message = tms.decode(data)
        if isinstance(message, tms.TmsAck):
            state.acks.append(message.sn)
            return
        if not isinstance(message, tms.TmsText):
            return
        state.text_times.append(time.monotonic())
        state.texts.append(message.body)
        state.text_sns.append(message.sn)
        if message.ack_requested and state.config.ack == "always":
            self._send(state, "tms", tms.encode_ack(message))
            state.ack_times.append(time.monotonic())
        reply = state.config.reply
        if reply is not None:
            self._spawn(self._reply_later(state.config.radio_id, reply, state.config.reply_delay_s))

    async def _reply_later(self, radio_id: int, text: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.send_text(radio_id, text)

    def _on_lrrp(self, state: _RadioState, data: bytes) -> None:
        document = lrrp.decode(data)
        if not isinstance(document, lrrp.LrrpRequest):
            return
        state.requests.append(document)
        rid = document.request_id
        if document.doc == lrrp.DocId.IMMEDIATE_LOCATION_REQUEST:
            self._report(state, lrrp.DocId.IMMEDIATE_LOCATION_REPORT, rid)
        elif document.doc == lrrp.DocId.TRIGGERED_LOCATION_START_REQUEST:
            old = state.triggers.pop(rid, None)
            if old is not None:
                old.cancel()
            if document.condition is not None:
                state.emergency_request = rid
            elif document.periodic_s:
                state.triggers[rid] = self._spawn(self._periodic(state, rid, document.periodic_s))
            answer = lrrp.LrrpReport(lrrp.DocId.TRIGGERED_LOCATION_START_ANSWER, rid, result_code=0)
            self._send(state, "lrrp", lrrp.encode_report(answer))
        elif document.doc == lrrp.DocId.TRIGGERED_LOCATION_STOP_REQUEST:
            task = state.triggers.pop(rid, None)
            if task is not None:
                task.cancel()
            if rid == state.emergency_request:
                state.emergency_request = None
            answer = lrrp.LrrpReport(lrrp.DocId.TRIGGERED_LOCATION_STOP_ANSWER, rid, result_code=0)
            self._send(state, "lrrp", lrrp.encode_report(answer))

    async def _periodic(self, state: _RadioState, rid: bytes, interval_s: int) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self._report(state, lrrp.DocId.TRIGGERED_LOCATION_REPORT, rid)

    def _report_bytes(self, state: _RadioState, doc: lrrp.DocId, rid: bytes) -> bytes:
        route = state.config.route
        lat, lon = route[state.step % len(route)]
        state.step += 1
        cfg = state.config
        report = lrrp.LrrpReport(
            doc,
            rid,
            info_time=datetime.now(UTC).replace(microsecond=0),
            shape=lrrp.Shape.CIRCLE_3D,
            lat=lat,
            lon=lon,
            radius_m=5.0,
            alt_m=cfg.altitude_m,
            speed_raw=lrrp.speed_raw_for(cfg.speed_kmh),
            direction_raw=lrrp.direction_raw_for(cfg.course_deg),
        )
        return lrrp.encode_report(report)

    def _report(self, state: _RadioState, doc: lrrp.DocId, rid: bytes) -> None:
        self._send(state, "lrrp", self._report_bytes(state, doc, rid))


def route_around(
    lat: float, lon: float, radius_m: float = 200.0, points: int = 8
) -> list[tuple[float, float]]:
    """A small loop of ``points`` positions around (lat, lon), for demos."""
    out = []
    for i in range(points):
        angle = 2 * math.pi * i / points
        dlat = radius_m * math.cos(angle) / METRES_PER_DEGREE
        dlon = radius_m * math.sin(angle) / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
        out.append((lat + dlat, lon + dlon))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--radios", default="1001,1002,1003", help="radio ids, comma separated")
    parser.add_argument("--gateway", default="127.0.0.1", help="the gateway's host")
    parser.add_argument("--cai", type=int, default=127)
    parser.add_argument("--ars-port", type=int, default=4005)
    parser.add_argument("--tms-port", type=int, default=4007)
    parser.add_argument("--lrrp-port", type=int, default=4001)
    parser.add_argument("--reply", default="收到", help="what each person answers a text with")
    parser.add_argument("--lat", type=float, default=31.2304)
    parser.add_argument("--lon", type=float, default=121.4737)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    radios = [
        SubscriberRadio(int(r), route=route_around(args.lat, args.lon), reply=args.reply or None)
        for r in args.radios.split(",")
        if r.strip()
    ]
    station = ControlStation(
        radios,
        gateway_host=args.gateway,
        ars_port=args.ars_port,
        tms_port=args.tms_port,
        lrrp_port=args.lrrp_port,
        cai=args.cai,
    )

    async def run() -> None:
        async with station:
            log.info("%d radios up; Ctrl-C stops", len(radios))
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
