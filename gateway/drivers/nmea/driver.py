"""GPS receivers speaking NMEA 0183: valid fixes become positions of the link's unit."""

from __future__ import annotations

from datetime import datetime

from gateway.config import LinkConfig
from gateway.drivers.base import Driver, EventSink
from gateway.model import DeviceRef, LinkCounters, Position, utc_now
from gateway.sessions import Session
from gateway.transport import Connection
from protocols.nmea.fix import FixAssembler
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
        # The hot path of every fix: names bound once, not looked up per sentence.
        feed, assemble, reject = splitter.feed, self._assembler.feed, self.rejects.reject
        sink_position, sink_heard = self.sink.position, self.sink.heard
        device = DeviceRef(self.link.name)
        counters = self.counters
        while True:
            data = await conn.read()
            counters.rx_bytes += len(data)
            received_at: datetime | None = None  # when this chunk arrived: once per read
            heard = False
            for item in feed(data):
                if isinstance(item, Rejected):
                    reject(item.reason, item.data)
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
                    reject("malformed", item.raw, f"{item.kind}: {exc}")
                    continue
                if message is None:
                    continue
                fix = assemble(message)
                if fix is not None:
                    if received_at is None:
                        received_at = utc_now()
                    counters.positions += 1
                    sink_position(
                        Position(
                            device, fix.lat, fix.lon, fix.fix_time, received_at, "nmea",
                            fix.alt_m, fix.speed_kmh, fix.course_deg, fix.satellites, fix.hdop,
                        )
                    )  # fmt: skip
            if heard:
                sink_heard(device)
