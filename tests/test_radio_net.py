"""The simulated radio channel: what one station sends, the others hear."""

from __future__ import annotations

import asyncio

import pytest

from firmware_stubs.aprs_radio import AprsRadio
from firmware_stubs.radio_net import RadioNet
from protocols import ax25, kiss
from protocols.aprs import AprsAck, decode_frame, encode_message
from tests.support import run_async

pytestmark = pytest.mark.timeout(30)


def message_frame(to: str, text: str, msgno: str) -> bytes:
    frame = ax25.Ax25Frame(
        dest=ax25.parse_address("APZFL"),
        source=ax25.parse_address("BH4GW-10"),
        info=encode_message(to, text, msgno=msgno),
    )
    return kiss.encode_frame(ax25.encode(frame))


def test_two_radios_on_one_channel_answer_the_gateway() -> None:
    async def scenario() -> None:
        net = RadioNet()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(net.serve(on_ready=lambda h, p: ready.set_result(p)))
        radios = [AprsRadio(call, reply=None, ack_delay_s=0.0) for call in ("BH4AA-7", "BH4BB-7")]
        ports = [net.attach(r.callsign) for r in radios]
        runs = [asyncio.create_task(r.run(p)) for r, p in zip(radios, ports, strict=True)]
        port = await asyncio.wait_for(ready, 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(message_frame("BH4BB-7", "hello", "A1"))
        decoder = kiss.KissDecoder()
        acks: list[AprsAck] = []
        async with asyncio.timeout(5):
            while not acks:
                for item in decoder.feed(await reader.read(4096)):
                    if isinstance(item, kiss.KissFrame):
                        packet = decode_frame(ax25.decode(item.payload))
                        if isinstance(packet, AprsAck):
                            acks.append(packet)
        assert acks[0].msgno == "A1"
        assert radios[1].received == [("BH4GW-10", "hello")]
        assert radios[0].received == []  # heard it, not addressed to it
        writer.close()
        for r in runs:
            r.cancel()
        server.cancel()
        await asyncio.gather(*runs, server, return_exceptions=True)

    run_async(scenario())
