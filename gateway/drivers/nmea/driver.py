"""GPS receivers speaking NMEA 0183: valid fixes become positions of the link's unit."""

from __future__ import annotations

from gateway.config import LinkConfig
from gateway.drivers.base import Driver, EventSink
from gateway.model import DeviceRef, LinkCounters, Position, utc_now
from gateway.sessions import Session
from gateway.transport import Connection
from protocols.nmea.fix import Fix, FixAssembler
from protocols.nmea.framing import NmeaError, Rejected, SentenceSplitter
from protocols.nmea.sentences import parse


class NmeaDriver(Driver):
    """Reads sentences, drops invalid ones (counted), publishes every complete valid fix."""

    def __init__(self, link: LinkConfig, sink: EventSink, counters: LinkCounters) -> None:
        super().__init__(link, sink, counters)
        # One per link, not per connection: what it learnt of the receiver's sentence
        # set (does it send GGA?) holds across a replug.
        self._assembler = FixAssembler()

    async def run(self, conn: Connection) -> None:
        await self._read(conn, None)

    async def serve_session(self, conn: Connection, session: Session) -> None:
        """A receiver that dialled in (``listen://``, ``udp-listen://``) binds the link's one
        device with its first good sentence: a receiver that redials replaces its old, maybe
        half-open, connection at once."""
        await self._read(conn, session)

    async def _read(self, conn: Connection, session: Session | None) -> None:
        splitter = SentenceSplitter(
            max_line_bytes=self.link.option("max_line_bytes", int),
            require_checksum=self.link.option("require_checksum", bool),
        )
        assembler = self._assembler
        device = DeviceRef(self.link.name)
        counters = self.counters
        while True:
            data = await conn.read()
            counters.rx_bytes += len(data)
            heard = False
            for item in splitter.feed(data):
                if isinstance(item, Rejected):
                    self.rejects.reject(item.reason, item.data)
                    continue
                counters.frames += 1
                heard = True
                if session is not None:
                    session.rx_frames += 1
                    if session.address is None:
                        session.bind("")  # NMEA: the link is the device
                try:
                    message = parse(item)
                except NmeaError as exc:
                    self.rejects.reject("malformed", item.raw, f"{item.kind}: {exc}")
                    continue
                if message is None:
                    continue
                fix = assembler.feed(message)
                if fix is not None:
                    self._publish(device, fix)
            if heard:
                self.sink.heard(device)

    def _publish(self, device: DeviceRef, fix: Fix) -> None:
        self.counters.positions += 1
        self.sink.position(
            Position(
                device=device,
                lat=fix.lat,
                lon=fix.lon,
                fix_time=fix.fix_time,
                received_at=utc_now(),
                source="nmea",
                alt_m=fix.alt_m,
                speed_kmh=fix.speed_kmh,
                course_deg=fix.course_deg,
                satellites=fix.satellites,
                hdop=fix.hdop,
            )
        )
