"""`fieldlink dispatch --until`: following a task's stage events on a real mosquitto.

No gateway runs here: the test plays the gateway, taking the task off the dispatch topic
and publishing the stage events a gateway would, malformed ones included.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.cli import main
from gateway.config import Config, parse_config
from gateway.devkit.broker import Mosquitto
from gateway.dispatch_cli import TaskFollower, build_task, default_timeout_s, follow_task
from gateway.topics import Topics
from tests.conftest import ROOT
from tests.support import run_async

pytestmark = [pytest.mark.broker, pytest.mark.timeout(30)]

UNIT = "zhang-wei"
Script = Callable[[str], list[bytes]]


def event(task_id: str, stage: str, since: float, **extra: Any) -> bytes:
    body = {"task_id": task_id, "unit": UNIT, "stage": stage, "at": f"t+{since:g}"}
    return json.dumps({**body, "since_created_s": since, **extra}).encode()


def stages(*names: str, **details: str) -> Script:
    return lambda task_id: [
        event(task_id, name, float(i), **({"detail": details[name]} if name in details else {}))
        for i, name in enumerate(names)
    ]


def make_config(tmp_path: Path, broker: Mosquitto) -> Config:
    return parse_config(
        {
            "gateway": {"id": "gw1", "data_dir": str(tmp_path / "data")},
            "mqtt": {"url": broker.url},
            "sla": {"acknowledge_s": 50, "contact_s": 170, "on_scene_s": 470, "close_s": 7200},
        },
        base_dir=tmp_path,
        env={},
    )


@asynccontextmanager
async def fake_gateway(broker: Mosquitto) -> AsyncIterator[aiomqtt.Client]:
    """A client subscribed to the dispatch topic before anything is dispatched."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="fake-gateway") as client:
        await client.subscribe(Topics("fieldlink", "gw1").dispatch, qos=1)
        yield client


async def answer(client: aiomqtt.Client, script: Script) -> dict[str, Any]:
    """Take the next task off the dispatch topic and publish the script's events for it."""
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        task: dict[str, Any] = json.loads(message.payload)
        for payload in script(task["task_id"]):
            await client.publish(Topics("fieldlink", "gw1").task_events(task["task_id"]), payload)
        return task
    raise AssertionError("the fake gateway's subscription ended")


def follow(
    tmp_path: Path, broker: Mosquitto, script: Script, *, until: str, timeout_s: float = 10
) -> int:
    config = make_config(tmp_path, broker)
    task = build_task(UNIT, "到人民广场", priority="urgent", voice=False, at=None, radius_m=100)

    async def scenario() -> int:
        async with fake_gateway(broker) as gateway:
            follower = asyncio.create_task(follow_task(config, task, timeout_s, until=until))
            sent = await answer(gateway, script)
            assert sent["task_id"] == task["task_id"]
            return await follower

    return run_async(scenario(), 20)


def test_until_closed_follows_every_stage_and_shows_escalation_and_attribution(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    def script(task_id: str) -> list[bytes]:
        first = stages(
            "received", "queued", "transmitted", "delivered", "acknowledged",
            acknowledged="reply #12",
        )(task_id)  # fmt: skip
        return [
            *first,
            first[-1],  # at-least-once: a repeat is shown once
            event(task_id, "contacted", 60.5, detail="reply-ack"),
            event(task_id, "escalated", 470, target="on_scene"),
            event(task_id, "on_scene", 475.25, detail="oldest of 3 waiting"),
            event(task_id, "feedback", 900),
            event(task_id, "closed", 1000),
        ]

    assert follow(tmp_path, mosquitto, script, until="closed") == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("task cli-")
    shown = [line.split()[1] for line in lines[1:]]
    assert shown == [
        "received", "queued", "transmitted", "delivered", "acknowledged", "contacted",
        "escalated", "on_scene", "feedback", "closed",
    ]  # fmt: skip
    assert "escalated (on_scene due)" in out
    assert "reply #12" in lines[5]
    assert "reply-ack" in lines[6]
    assert "+475.2s" in out or "+475.3s" in out
    assert "oldest of 3 waiting" in out
    assert err == ""


def test_until_contacted_ends_at_contacted(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    script = stages("received", "transmitted", "acknowledged", "contacted", "on_scene")
    assert follow(tmp_path, mosquitto, script, until="contacted") == 0
    out = capsys.readouterr().out
    assert "contacted" in out
    assert "on_scene" not in out  # it stopped at the stage it waited for


def test_declined_exits_1(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    script = stages("received", "delivered", "declined", "acknowledged", declined="reply #3: 不去")
    assert follow(tmp_path, mosquitto, script, until="contacted") == 1
    out, err = capsys.readouterr()
    assert "declined" in out
    assert "reply #3: 不去" in out
    assert "declined" in err
    assert "acknowledged" not in out


def test_malformed_events_and_other_tasks_are_skipped(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    def script(task_id: str) -> list[bytes]:
        return [
            b"not json {",
            b"\xff\xfe\x00garbage",
            b"[1, 2, 3]",
            b'"received"',
            b"[" * 100_000 + b"]" * 100_000,
            json.dumps({"unit": UNIT, "stage": "received"}).encode(),
            json.dumps({"task_id": task_id, "unit": UNIT, "stage": 7}).encode(),
            event("someone-elses-task", "declined", 1.0),
            event(task_id, "received", True, detail="\x1b[2Jcleared?"),
            event(task_id, "contacted", 9.0),
        ]

    assert follow(tmp_path, mosquitto, script, until="contacted") == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert err.count("warning: skipped an event") == 7
    assert "not JSON" in err
    assert "not a JSON object but list" in err
    assert "declined" not in out  # another task's event
    assert "\x1b" not in out
    assert "\\x1b[2Jcleared?" in out


def test_timeout_names_the_stage_waited_for(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    script = stages("received", "transmitted", "acknowledged")
    assert follow(tmp_path, mosquitto, script, until="on_scene", timeout_s=0.5) == 1
    out, err = capsys.readouterr()
    assert "acknowledged" in out
    assert "no on_scene within 0.5 s" in err
    assert f"{UNIT} (at acknowledged)" in err


def test_the_command_follows_until_contacted(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The CLI as a process: `--until contacted` exits 0 once the unit reached the caller."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gateway]\nid = "gw1"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n',
        encoding="utf-8",
    )

    async def scenario() -> tuple[int | None, str, str]:
        async with fake_gateway(mosquitto) as gateway:
            proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "gateway.cli", "dispatch", "-c", str(config)),
                *("--unit", UNIT, "--until", "contacted", "--timeout", "15", "到人民广场"),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                script = stages("received", "acknowledged", "contacted", contacted="reply #1")
                await answer(gateway, script)
                out, err = await proc.communicate()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            return proc.returncode, out.decode(), err.decode()

    code, out, err = run_async(scenario(), 25)
    assert code == 0, err
    assert "contacted" in out
    assert "reply #1" in out


def test_default_timeout_is_the_stage_sla_target_plus_30(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto)
    targets = {"acknowledged": 50, "contacted": 170, "on_scene": 470, "closed": 7200}
    for until, target in targets.items():
        assert default_timeout_s(config, until) == target + 30


@pytest.mark.parametrize(
    "argv",
    [["--until", "delivered"], ["--until", "feedback"]],
)
def test_until_takes_only_the_clock_stages(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dispatch", "--unit", UNIT, *argv, "hi"])
    assert exc.value.code == 2


def test_a_non_positive_timeout_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[gateway]\nid = "gw1"\n', encoding="utf-8")
    argv = ["dispatch", "-c", str(config), "--unit", UNIT, "--timeout", "0", "hi"]
    assert main(argv) == 2


def test_every_unit_must_reach_the_stage_and_a_failure_of_any_ends_it() -> None:
    """Without a broker: the decision for a task sent to two units."""

    def feed(follower: TaskFollower, unit: str, stage: str) -> int | None:
        body = {"task_id": "t1", "unit": unit, "stage": stage, "at": "x"}
        return follower.feed(json.dumps(body))

    out, err = io.StringIO(), io.StringIO()
    two = TaskFollower("t1", ["a", "b"], "contacted", out=out, err=err)
    assert feed(two, "a", "contacted") is None
    assert feed(two, "b", "acknowledged") is None
    assert feed(two, "stranger", "closed") is None
    assert two.pending() == ["b (at acknowledged)"]
    assert feed(two, "b", "on_scene") == 0  # a later stage counts
    assert " a " in out.getvalue()  # the unit is shown when there are several

    rejected = TaskFollower("t1", ["a", "b"], "acknowledged", out=out, err=err)
    assert feed(rejected, "", "rejected") == 1
    cancelled = TaskFollower("t1", ["a", "b"], "closed", out=out, err=err)
    assert feed(cancelled, "a", "closed") is None
    assert feed(cancelled, "b", "cancelled") == 1
    assert "Traceback" not in err.getvalue()
