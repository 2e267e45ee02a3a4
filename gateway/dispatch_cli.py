"""``fieldlink dispatch``: publish one task over MQTT and follow its events.

What a dispatcher at a terminal (or a script) uses to send a task to a unit without a
dispatch server: it connects to the gateway's broker with its own client id, subscribes
to the task's events *before* publishing the task, and prints each stage as it comes,
until a person acknowledged it (exit 0), it ended otherwise (exit 1), or the wait ran
out (exit 1).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from datetime import timedelta
from typing import Any

import aiomqtt

from gateway.config import Config
from gateway.model import rfc3339, utc_now
from gateway.mqtt import tls_context
from gateway.topics import Topics

ENDS = {"acknowledged": 0, "declined": 1, "failed": 1, "expired": 1, "cancelled": 1, "rejected": 1}


def build_task(
    unit: str,
    text: str,
    *,
    priority: str,
    voice: bool,
    at: tuple[float, float] | None,
    radius_m: float,
) -> dict[str, Any]:
    now = utc_now()
    task: dict[str, Any] = {
        "task_id": f"cli-{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}",
        "units": [unit],
        "text": text,
        "priority": priority,
        "voice": voice,
        "created_at": rfc3339(now),
    }
    if at is not None:
        task["incident"] = {"lat": at[0], "lon": at[1], "radius_m": radius_m}
    return task


def parse_at(text: str) -> tuple[float, float]:
    lat_text, sep, lon_text = text.partition(",")
    if not sep:
        raise ValueError("--at takes LAT,LON")
    lat, lon = float(lat_text), float(lon_text)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("--at is out of range")
    return lat, lon


async def follow_task(config: Config, task: dict[str, Any], timeout_s: float) -> int:
    topics = Topics(config.mqtt.base_topic, config.gateway.id)
    events_topic = topics.task_events(task["task_id"])
    cfg = config.mqtt
    async with aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=f"fieldlink-dispatch-{secrets.token_hex(4)}",
        username=cfg.username or None,
        password=cfg.password or None,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=tls_context(cfg),
        timeout=10,
    ) as client:
        await client.subscribe(events_topic, qos=1)
        payload = json.dumps(task, ensure_ascii=False).encode()
        await client.publish(topics.dispatch, payload, qos=1)
        print(f"task {task['task_id']} sent to {', '.join(task['units'])}", flush=True)
        try:
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    event = json.loads(message.payload)
                    stage = event.get("stage", "?")
                    detail = f"  {event['detail']}" if event.get("detail") else ""
                    since = event.get("since_created_s")
                    took = f"+{since:.1f}s" if isinstance(since, int | float) else ""
                    print(f"{event.get('at', '')}  {stage:<13} {took:>9}{detail}", flush=True)
                    if stage in ENDS:
                        return ENDS[stage]
        except TimeoutError:
            print(f"no acknowledgement within {timedelta(seconds=timeout_s)}", file=sys.stderr)
            return 1
    return 1
