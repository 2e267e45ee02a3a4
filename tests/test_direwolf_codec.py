"""Our KISS/AX.25/APRS codec against Debian's direwolf 1.6 tools (a real, independent peer).

- ``gen_packets`` turns our frames (TNC2 text) into AFSK audio, ``atest -h`` demodulates it and
  dumps the AX.25 bytes: they must be the bytes our encoder writes (C bits aside), and decode to our
  frames.
- A ``direwolf`` instance (UDP audio in, ALSA ``null`` out, KISS over TCP) receives the KISS frames
  our encoder writes and logs what it transmits: the same TNC2 text as ours.
- ``decode_aprs`` decodes our positions (uncompressed, compressed, Mic-E) to the same coordinates.

How to run the tools: ../shared/notes/direwolf-peer.md sections 2 and 5 (gen_packets keeps the
line's ``\\n`` in the info field; direwolf logs transmitted frames as ``[0L] SRC>DST...``).
These tests fail when a tool is missing and ``CI`` is set, and are skipped otherwise.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols import ax25, kiss
from protocols.aprs import (
    AprsPosition,
    decode_frame,
    encode_ack,
    encode_bulletin,
    encode_message,
    encode_mic_e,
    encode_position,
    encode_rej,
    encode_status,
)
from tests.conftest import IN_CI

pytestmark = pytest.mark.direwolf

TOOLS = ("direwolf", "gen_packets", "atest", "decode_aprs")
ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
HEX_ESCAPE = re.compile(rb"<0x([0-9a-fA-F]{2})>")
TX_LOG = re.compile(rb"^\[0[LH]\] (.*)$", re.MULTILINE)
HEX_ROW = re.compile(rb"^\s+[0-9a-f]{3}:\s+((?:[0-9a-f]{2} )+)", re.MULTILINE)


@pytest.fixture(scope="module", autouse=True)
def direwolf_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        reason = f"direwolf tools missing: {', '.join(missing)} (apt-get install direwolf)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def address(text: str) -> ax25.Address:
    return ax25.parse_address(text)


def ui(dest: str, info: bytes, digis: tuple[str, ...] = ("WIDE1-1",)) -> ax25.Ax25Frame:
    return ax25.Ax25Frame(
        address(dest), address("BH4ABC-9"), tuple(address(d) for d in digis), info=info
    )


def our_frames() -> list[ax25.Ax25Frame]:
    mic_e_dest, mic_e_info = encode_mic_e(
        33.427333, -12.129, speed_kmh=37.04, course_deg=251, alt_m=61, status="Emergency"
    )
    return [
        ui("APRS", encode_message("BG5XYZ-7", "Task 17: go to gate 3", "00017")),
        ui("APRS", encode_message("BG5XYZ-7", "收到 三号门 张伟", "A1", "")),
        ui("APRS", encode_ack("BG5XYZ-7", "00017"), ()),
        ui("APRS", encode_rej("BG5XYZ-7", "00018"), ("WIDE1-1*", "WIDE2-1")),
        ui("APRS", encode_bulletin("1", "Road closed at gate 5")),
        ui("APRS", encode_status("on duty 12.6V")),
        ui(
            "APRS",
            encode_position(
                31.235333, 121.474167, course_deg=88, speed_kmh=66.7, alt_m=37.5, comment="R7"
            ),
        ),
        ui("APRS", encode_position(49.5, -72.75, compressed=True, course_deg=88, speed_kmh=67)),
        ui("APRS", encode_position(-33.9, 151.2, compressed=True, alt_m=300, messaging=True)),
        ui(mic_e_dest, mic_e_info),
    ]


def run(args: list[str], stdin: bytes = b"", timeout_s: float = 60) -> bytes:
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return ANSI.sub(b"", done.stdout + done.stderr)


def unescape(text: bytes) -> bytes:
    """direwolf prints non-printable bytes as ``<0xNN>``."""
    return HEX_ESCAPE.sub(lambda m: bytes.fromhex(m.group(1).decode()), text)


def without_c_bits(frame_bytes: bytes) -> bytes:
    """Clear bit 7 of the destination and source SSID bytes (C bits differ by design)."""
    data = bytearray(frame_bytes)
    data[6] &= 0x7F
    data[13] &= 0x7F
    return bytes(data)


def test_gen_packets_atest_round_trip(tmp_path: Path) -> None:
    frames = our_frames()
    source = tmp_path / "frames.txt"
    source.write_bytes(b"".join(f.tnc2() + b"\n" for f in frames))
    wav = tmp_path / "frames.wav"
    run(["gen_packets", "-o", str(wav), str(source)])
    out = run(["atest", "-h", "-L", str(len(frames)), "-G", str(len(frames)), str(wav)])
    blocks = out.split(b"DECODED[")[1:]
    assert len(blocks) == len(frames)
    for ours, block in zip(frames, blocks, strict=True):
        heard = bytes.fromhex(b"".join(HEX_ROW.findall(block)).decode())
        # gen_packets keeps the input line's "\n" in the info field (direwolf-peer.md section 5).
        assert heard.endswith(b"\n")
        assert without_c_bits(heard[:-1]) == without_c_bits(ax25.encode(ours))
        decoded = ax25.decode(heard)
        assert decoded.info == ours.info + b"\n"
        assert (decoded.dest, decoded.source, decoded.digipeaters) == (
            ours.dest,
            ours.source,
            ours.digipeaters,
        )
        assert decode_frame(decoded) == decode_frame(ours)
        (line,) = [ln for ln in block.splitlines() if ln.startswith(b"[0] ")]
        assert unescape(line[4:]) == ours.tnc2() + b"\n"


def free_port(kind: socket.SocketKind) -> int:
    """A free port in 20000..49151: direwolf silently replaces KISSPORT values above 49151 by 8001
    (direwolf-peer.md section 1), so the kernel's ephemeral ports will not do."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 49151)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))  # direwolf binds INADDR_ANY  # noqa: S104
            except OSError:
                continue
            return port
    pytest.fail("no free port in 20000..49151")


def wait_for(path: Path, pattern: bytes, count: int, timeout_s: float) -> bytes:
    """Poll direwolf's log until ``pattern`` (a regex) matched ``count`` lines."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_bytes()
        if len(regex.findall(text)) >= count:
            return text
        if time.monotonic() > deadline:
            pytest.fail(
                f"direwolf log lacks {count} x {pattern!r}:\n{text.decode(errors='replace')}"
            )
        time.sleep(0.05)


@pytest.fixture
def direwolf_kiss_port(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    kiss_port = free_port(socket.SOCK_STREAM)
    udp_port = free_port(socket.SOCK_DGRAM)
    conf = tmp_path / "direwolf.conf"
    conf.write_text(
        f"ADEVICE UDP:{udp_port} null\nARATE 44100\nACHANNELS 1\nCHANNEL 0\n"
        f"MYCALL BH4ABC-9\nMODEM 1200\nAGWPORT 0\nKISSPORT {kiss_port}\n"
        "TXDELAY 1\nTXTAIL 1\nPERSIST 255\nSLOTTIME 1\n"
    )
    log = tmp_path / "direwolf.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["direwolf", "-c", str(conf), "-t", "0", "-q", "hd"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
    try:
        wait_for(log, rb"^Ready to accept KISS TCP client", 1, 10)
        yield kiss_port, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_direwolf_decodes_our_kiss_frames(direwolf_kiss_port: tuple[int, Path]) -> None:
    port, log = direwolf_kiss_port
    frames = our_frames()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        # Parameter frames first (direwolf-peer.md section 8 shows it applies them), then data.
        conn.sendall(kiss.encode_tx_delay(10) + kiss.encode_persistence(1.0))
        conn.sendall(b"".join(kiss.encode_frame(ax25.encode(f)) for f in frames))
        text = wait_for(log, TX_LOG.pattern, len(frames), 30)
    # Frames with a used digipeater go to the high-priority queue ("[0H]"), so order may differ.
    heard = sorted(unescape(m) for m in TX_LOG.findall(text))
    assert heard == sorted(f.tnc2() for f in frames)
    by_text = {f.tnc2(): f for f in frames}
    for line in heard:
        assert decode_frame(ax25.parse_tnc2(line)) == decode_frame(by_text[line])


COORD = re.compile(rb"([NS]) (\d+) ([\d.]+), ([EW]) (\d+) ([\d.]+)")


def test_decode_aprs_agrees_on_positions() -> None:
    frames = [f for f in our_frames() if isinstance(decode_frame(f), AprsPosition)]
    assert len(frames) == 4
    out = run(["decode_aprs"], stdin=b"".join(f.tnc2() + b"\n" for f in frames))
    coords = COORD.findall(out)
    assert len(coords) == len(frames), out.decode(errors="replace")
    for ours, (ns, lat_d, lat_m, ew, lon_d, lon_m) in zip(frames, coords, strict=True):
        packet = decode_frame(ours)
        assert isinstance(packet, AprsPosition)
        lat = (int(lat_d) + float(lat_m) / 60) * (1 if ns == b"N" else -1)
        lon = (int(lon_d) + float(lon_m) / 60) * (1 if ew == b"E" else -1)
        assert packet.lat == pytest.approx(lat, abs=1e-4)
        assert packet.lon == pytest.approx(lon, abs=1e-4)
    assert b"Emergency" in out  # the Mic-E message bits 000
