"""Channel benchmark: a burst of 60 tasks (10 urgent) on one simulated 1200-baud channel.

The tasks go through the dispatch service to a radio whose link is a half-duplex
``Channel`` with AFSK 1200 airtimes; the radio confirms each frame as it goes on air.
Prints JSON lines:

* ``order``: whether every urgent task was on air before any normal one queued at
  the same moment;
* ``drain``: the burst's wall time against the physical limit (the sum of the frames'
  airtimes), as a ratio (target: at most 1.05).

``--speedup N`` divides every airtime by N (the ratio does not depend on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.channel import Channel, afsk1200_airtime_s  # noqa: E402
from gateway.config import parse_config  # noqa: E402
from gateway.dispatch import Dispatcher  # noqa: E402
from gateway.drivers.spec import Capabilities  # noqa: E402
from gateway.journal import Journal  # noqa: E402
from gateway.model import Delivery, DeliveryReport, TextOrder, rfc3339, utc_now  # noqa: E402
from gateway.topics import Topics  # noqa: E402
from protocols import ax25, kiss  # noqa: E402
from protocols.aprs import encode_message  # noqa: E402

TASKS = 60
URGENT_TASKS = 10


class ChannelRadio:
    """A TextSender on a simulated half-duplex channel: a frame per text, confirmed on air."""

    capabilities = Capabilities(text=True)

    def __init__(self, speedup: float) -> None:
        self.on_air: list[tuple[float, str]] = []
        self.airtime_total = 0.0
        self.last_airtime = 0.0
        self._speedup = speedup
        self.channel = Channel("vhf", self._write, self._airtime)

    def _airtime(self, frame: bytes) -> float:
        seconds = afsk1200_airtime_s(len(frame)) / self._speedup
        self.airtime_total += seconds
        self.last_airtime = seconds
        return seconds

    async def _write(self, frame: bytes) -> None:
        self.on_air.append((asyncio.get_running_loop().time(), frame.decode("latin-1")))

    def can_reach(self, address: str) -> bool:
        return True

    async def send_text(
        self, order: TextOrder, on_transmitted: Callable[[], None]
    ) -> DeliveryReport:
        info = encode_message(order.address, order.text[:60], msgno="1")
        frame = ax25.Ax25Frame(
            dest=ax25.parse_address("APZFL"),
            source=ax25.parse_address("BH4GW-10"),
            digipeaters=(ax25.parse_address("WIDE1-1"),),
            info=info,
        )
        await self.channel.transmit(kiss.encode_frame(ax25.encode(frame)), order.priority)
        on_transmitted()
        return DeliveryReport(Delivery.DELIVERED, transmissions=1)

    async def poll_location(self, address: str) -> bool:
        return False


async def burst(speedup: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="fieldlink-bench-") as tmp:
        units = [
            {"id": f"u{i}", "name": f"u{i}", "devices": [f"vhf:BH4U{i}-1"]} for i in range(TASKS)
        ]
        config = parse_config(
            {
                "gateway": {"id": "bench", "data_dir": tmp},
                "links": [
                    {
                        "name": "vhf",
                        "protocol": "aprs",
                        "url": "tcp://127.0.0.1:9",
                        "callsign": "BH4GW-10",
                    }
                ],
                "units": units,
            },
            base_dir=Path(tmp),
            env={},
        )
        journal = Journal.open(Path(tmp) / "journal.sqlite")
        radio = ChannelRadio(speedup)
        dispatcher = Dispatcher(
            config,
            journal,
            Topics("fieldlink", "bench"),
            emit=lambda topic, payload: None,
            senders=lambda device: radio if device.link == "vhf" else None,
        )
        channel_task = asyncio.create_task(radio.channel.run())
        dispatch_task = asyncio.create_task(dispatcher.run())
        urgent_ids = {f"t{i}" for i in range(5, TASKS, TASKS // URGENT_TASKS)}
        created = rfc3339(utc_now())
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(TASKS):
            task_id = f"t{i}"
            body = {
                "task_id": task_id,
                "units": [f"u{i}"],
                "text": f"{task_id} 到人民广场东侧",
                "priority": "urgent" if task_id in urgent_ids else "normal",
                "created_at": created,
            }
            dispatcher.dispatch(json.dumps(body, ensure_ascii=False).encode())
        while len(radio.on_air) < TASKS:  # noqa: ASYNC110 - a benchmark polls the tally
            await asyncio.sleep(0.005)
        # The burst is over when the last frame has left the antenna.
        elapsed = radio.on_air[-1][0] + radio.last_airtime - started
        dispatch_task.cancel()
        channel_task.cancel()
        await asyncio.gather(dispatch_task, channel_task, return_exceptions=True)
        journal.close()
    order = [text for _, text in radio.on_air]
    urgent_positions = [
        i for i, text in enumerate(order) if any(f"{u} " in text for u in urgent_ids)
    ]
    # The first frame may already be on air before the urgent ones are queued.
    urgent_first = max(urgent_positions) <= URGENT_TASKS
    return {
        "tasks": TASKS,
        "urgent": URGENT_TASKS,
        "urgent_on_air_first": urgent_first,
        "urgent_positions": urgent_positions,
        "elapsed_s": round(elapsed, 3),
        "airtime_sum_s": round(radio.airtime_total, 3),
        "ratio_to_airtime": round(elapsed / radio.airtime_total, 4),
        "target_ratio": 1.05,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--speedup", type=float, default=1.0)
    args = parser.parse_args()
    result = asyncio.run(burst(args.speedup))
    print(
        json.dumps(
            {
                "figure": "order",
                **{
                    k: result[k]
                    for k in ("tasks", "urgent", "urgent_on_air_first", "urgent_positions")
                },
            }
        )
    )
    print(
        json.dumps(
            {
                "figure": "drain",
                **{
                    k: result[k]
                    for k in ("elapsed_s", "airtime_sum_s", "ratio_to_airtime", "target_ratio")
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
