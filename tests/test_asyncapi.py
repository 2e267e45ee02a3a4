"""The AsyncAPI document (gateway/asyncapi.json) against its own structure, the SPEC topic table,
hand-written examples, and what the daemon really publishes on a real mosquitto."""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_stubs.nmea_gps import GpsPty, NmeaGps
from gateway.config import MQTT_OPTIONS
from gateway.devkit.asyncapi import (
    AsyncApiError,
    actions_for_channel,
    address_parameters,
    inline_refs,
    load_asyncapi,
    match_channel,
    resolve_ref,
    schema_for_component,
    schema_for_topic,
)
from gateway.devkit.broker import Mosquitto
from gateway.mqtt import PACKET_OVERHEAD_BYTES
from gateway.topics import Topics
from tests.support import Collector, GatewayProcess, Received, wait_until
from tests.test_alarms import ZHANG, mic_e
from tests.test_hardening import KissTnc, aprs_link

T0 = "2026-11-28T08:00:00.000Z"

# --- a structural schema for the parts of AsyncAPI 3.0.0 this document uses ------------------
# Written from the AsyncAPI 3.0.0 specification (no network, no copy of the official schema).

_REF = {
    "type": "object",
    "required": ["$ref"],
    "properties": {"$ref": {"type": "string", "pattern": "^#/"}},
    "additionalProperties": False,
}
_TEXT = {"type": "string", "minLength": 1}
_EXT: dict[str, object] = {"^x-": {}}
_QOS = {"type": "integer", "enum": [0, 1, 2]}
_RUNTIME = {
    "type": "object",
    "required": ["location"],
    "properties": {
        "location": {"type": "string", "pattern": r"^\$message\.(header|payload)#(/.*)?$"},
        "description": _TEXT,
    },
    "additionalProperties": False,
}
_SERVER_BINDING = {
    "type": "object",
    "required": ["bindingVersion"],
    "properties": {
        "clientId": _TEXT,
        "cleanSession": {"type": "boolean"},
        "lastWill": {
            "type": "object",
            "required": ["topic", "qos", "message", "retain"],
            "properties": {
                "topic": _TEXT,
                "qos": _QOS,
                "message": {"type": "string"},
                "retain": {"type": "boolean"},
            },
            "additionalProperties": False,
        },
        "keepAlive": {"type": "integer", "minimum": 0},
        "sessionExpiryInterval": {"type": "integer", "minimum": 0},
        "maximumPacketSize": {"type": "integer", "minimum": 1, "maximum": 4294967295},
        "bindingVersion": {"const": "0.2.0"},
    },
    "additionalProperties": False,
}
_OPERATION_BINDING = {
    "type": "object",
    "required": ["bindingVersion"],
    "properties": {
        "qos": _QOS,
        "retain": {"type": "boolean"},
        "messageExpiryInterval": {"type": "integer", "minimum": 0},
        "bindingVersion": {"const": "0.2.0"},
    },
    "additionalProperties": False,
}
_MESSAGE_BINDING = {
    "type": "object",
    "required": ["bindingVersion"],
    "properties": {
        "payloadFormatIndicator": {"enum": [0, 1]},
        "correlationData": {"type": "object"},
        "contentType": _TEXT,
        "responseTopic": {"type": ["string", "object"]},
        "bindingVersion": {"const": "0.2.0"},
    },
    "additionalProperties": False,
}
_MESSAGE = {
    "type": "object",
    "required": ["payload"],
    "properties": {
        "headers": {"type": "object"},
        "payload": {"type": "object"},
        "correlationId": _RUNTIME,
        "contentType": _TEXT,
        "name": _TEXT,
        "title": _TEXT,
        "summary": _TEXT,
        "description": _TEXT,
        "examples": {
            "type": "array",
            "items": {
                "type": "object",
                "minProperties": 1,
                "properties": {
                    "headers": {"type": "object"},
                    "payload": {},
                    "name": _TEXT,
                    "summary": _TEXT,
                },
                "additionalProperties": False,
            },
        },
        "bindings": {
            "type": "object",
            "properties": {"mqtt": _MESSAGE_BINDING},
            "additionalProperties": False,
        },
    },
    "patternProperties": _EXT,
    "additionalProperties": False,
}
_PARAMETER = {
    "type": "object",
    "properties": {
        "enum": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "default": {"type": "string"},
        "description": _TEXT,
        "examples": {"type": "array", "items": {"type": "string"}},
        "location": {"type": "string"},
    },
    "patternProperties": _EXT,
    "additionalProperties": False,
}
_CHANNEL = {
    "type": "object",
    "required": ["address", "messages"],
    "properties": {
        "address": {"type": ["string", "null"]},
        "messages": {"type": "object", "minProperties": 1, "additionalProperties": _REF},
        "parameters": {"type": "object", "additionalProperties": _REF},
        "title": _TEXT,
        "summary": _TEXT,
        "description": _TEXT,
        "bindings": {"type": "object"},
    },
    "patternProperties": _EXT,
    "additionalProperties": False,
}
_OPERATION = {
    "type": "object",
    "required": ["action", "channel"],
    "properties": {
        "action": {"enum": ["send", "receive"]},
        "channel": _REF,
        "title": _TEXT,
        "summary": _TEXT,
        "description": _TEXT,
        "messages": {"type": "array", "items": _REF},
        "reply": {
            "type": "object",
            "properties": {
                "address": _RUNTIME,
                "channel": _REF,
                "messages": {"type": "array", "items": _REF},
            },
            "additionalProperties": False,
        },
        "bindings": {
            "type": "object",
            "properties": {"mqtt": _OPERATION_BINDING},
            "additionalProperties": False,
        },
    },
    "patternProperties": _EXT,
    "additionalProperties": False,
}
_KEY = "^[A-Za-z0-9_.-]+$"
ASYNCAPI_3_SUBSET: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["asyncapi", "info", "channels", "operations", "components"],
    "properties": {
        "asyncapi": {"const": "3.0.0"},
        "id": {"type": "string"},
        "info": {
            "type": "object",
            "required": ["title", "version"],
            "properties": {
                "title": _TEXT,
                "version": _TEXT,
                "description": _TEXT,
                "license": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": _TEXT, "url": {"type": "string"}},
                },
            },
        },
        "defaultContentType": _TEXT,
        "servers": {
            "type": "object",
            "propertyNames": {"pattern": _KEY},
            "additionalProperties": {
                "type": "object",
                "required": ["host", "protocol"],
                "properties": {
                    "host": _TEXT,
                    "protocol": {"enum": ["mqtt", "mqtts", "secure-mqtt", "ws", "wss"]},
                    "protocolVersion": {"enum": ["3.1.1", "5"]},
                    "pathname": {"type": "string"},
                    "description": _TEXT,
                    "bindings": {
                        "type": "object",
                        "properties": {"mqtt": _SERVER_BINDING},
                        "additionalProperties": False,
                    },
                },
                "patternProperties": _EXT,
                "additionalProperties": False,
            },
        },
        "channels": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": _KEY},
            "additionalProperties": _CHANNEL,
        },
        "operations": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": _KEY},
            "additionalProperties": _OPERATION,
        },
        "components": {
            "type": "object",
            "properties": {
                "schemas": {"type": "object", "additionalProperties": {"type": "object"}},
                "messages": {"type": "object", "additionalProperties": _MESSAGE},
                "parameters": {"type": "object", "additionalProperties": _PARAMETER},
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load_asyncapi()


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def errors(schema: dict[str, Any], payload: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator(schema).iter_errors(payload)
    ]


def refs_in(node: object, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from refs_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from refs_in(item, f"{where}/{index}")


# --- (a) structure --------------------------------------------------------------------------


def test_document_is_structurally_asyncapi_3(doc: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(ASYNCAPI_3_SUBSET)
    problems = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft202012Validator(ASYNCAPI_3_SUBSET).iter_errors(doc)
    ]
    assert not problems, "\n".join(problems)
    assert doc["info"]["version"] == "0.1.0"
    assert doc["defaultContentType"] == "application/json"


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    found = list(refs_in(doc))
    assert len(found) > 50
    for where, ref in found:
        try:
            resolve_ref(doc, ref)
        except AsyncApiError as exc:
            pytest.fail(f"{where}: {exc}")
    with pytest.raises(AsyncApiError):
        resolve_ref(doc, "#/components/schemas/Nope")


def test_operations_point_into_their_channels(doc: dict[str, Any]) -> None:
    used_channels = set()
    for name, op in doc["operations"].items():
        channel_ref = op["channel"]["$ref"]
        assert channel_ref.startswith("#/channels/"), name
        channel = resolve_ref(doc, channel_ref)
        used_channels.add(channel_ref.removeprefix("#/channels/"))
        assert op.get("messages"), f"{name} names no message"
        for message in op["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
        assert {m["$ref"].rsplit("/", 1)[1] for m in op["messages"]} <= set(channel["messages"])
        reply = op.get("reply")
        if reply:
            reply_channel = reply["channel"]["$ref"]
            resolve_ref(doc, reply_channel)
            for message in reply.get("messages", []):
                assert message["$ref"].startswith(f"{reply_channel}/messages/"), name
        assert op["bindings"]["mqtt"]["qos"] in (0, 1), name
    assert used_channels == set(doc["channels"]), "a channel without an operation"


def test_address_parameters_are_declared_and_used(doc: dict[str, Any]) -> None:
    for name, channel in doc["channels"].items():
        address = channel["address"]
        used = address_parameters(address) if address else []
        declared = list(channel.get("parameters", {}))
        assert len(used) == len(set(used)), f"{name}: a parameter twice in {address}"
        assert set(used) == set(declared), f"{name}: {address} uses {used}, declares {declared}"
        if address:
            assert address.startswith("{base}/{gatewayId}/"), name


def test_every_payload_schema_is_a_json_schema(doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        Draft202012Validator.check_schema(schema_for_component(doc, name))
    for name, message in doc["components"]["messages"].items():
        payload = inline_refs(doc, message)["payload"]
        Draft202012Validator.check_schema(payload)
        assert "$ref" not in json.dumps(payload), f"{name}: a $ref left after inlining"
        assert payload.get("type") == "object", name


def test_server_binding_and_last_will(doc: dict[str, Any]) -> None:
    (server,) = doc["servers"].values()
    assert server["protocol"] == "mqtts"
    mqtt = server["bindings"]["mqtt"]
    assert mqtt["clientId"] == "fieldlink-{gatewayId}"
    assert mqtt["cleanSession"] is False
    assert mqtt["sessionExpiryInterval"] == 86400
    assert mqtt["keepAlive"] == 30
    # The Maximum Packet Size the gateway announces with the default mqtt.max_inbound_bytes.
    default_max_inbound = MQTT_OPTIONS["max_inbound_bytes"].default
    assert isinstance(default_max_inbound, int)
    assert mqtt["maximumPacketSize"] == default_max_inbound + PACKET_OVERHEAD_BYTES
    will = mqtt["lastWill"]
    assert (will["qos"], will["retain"]) == (1, True)
    assert match_channel(doc, will["topic"]).name == "state"
    payload = json.loads(will["message"])
    assert payload["state"] == "offline"
    assert not errors(schema_for_topic(doc, will["topic"]), payload)


# The SPEC section 5 table: topic, channel, direction (gateway's view), QoS, retained.
SPEC_TABLE = [
    ("state", "state", "send", 1, True),
    ("info", "info", "send", 1, True),
    ("health", "health", "send", 0, True),
    ("link_state", "linkState", "send", 1, True),
    ("availability", "unitAvailability", "send", 1, True),
    ("position", "unitPosition", "send", 0, True),
    ("message", "unitMessage", "send", 1, False),
    ("alarm", "unitAlarm", "send", 1, False),
    ("alarms", "alarms", "send", 1, True),
    ("dispatch", "taskDispatch", "receive", 1, False),
    ("cancel", "taskCancel", "receive", 1, False),
    ("rejected", "taskRejected", "send", 1, False),
    ("task_events", "taskEvents", "send", 1, False),
    ("request", "request", "receive", 1, False),
    ("response", "response", "send", 1, False),
]


def concrete_topic(topics: Topics, attr: str) -> str:
    arguments = {
        "link_state": "gps-car1",
        "availability": "zhang-wei",
        "position": "zhang-wei",
        "message": "zhang-wei",
        "alarm": "zhang-wei",
        "task_events": "t-100",
        "request": "units",
        "response": "units",
    }
    value = getattr(topics, attr)
    return str(value(arguments[attr]) if attr in arguments else value)


@pytest.mark.parametrize("base", ["fieldlink", "city/east"])
@pytest.mark.parametrize(("attr", "channel", "action", "qos", "retain"), SPEC_TABLE)
def test_spec_topic_table(
    doc: dict[str, Any], base: str, attr: str, channel: str, action: str, qos: int, retain: bool
) -> None:
    topic = concrete_topic(Topics(base, "shangtang"), attr)
    match = match_channel(doc, topic)
    assert match.name == channel
    assert match.parameters["base"] == base
    assert match.parameters["gatewayId"] == "shangtang"
    assert actions_for_channel(doc, channel) == {action}
    for op in doc["operations"].values():
        if op["channel"]["$ref"] == f"#/channels/{channel}":
            assert op["bindings"]["mqtt"]["qos"] == qos
            assert op["bindings"]["mqtt"]["retain"] is retain


COMMANDS = [
    "poll_location",
    "send_text",
    "task_status",
    "units",
    "nearest_units",
    "sla",
    "report_stage",
    "alarms",
    "clear_alarm",
]
TYPED_RESPONSES = {
    "report_stage": "ReportStageResult",
    "alarms": "AlarmSummary",
    "clear_alarm": "AlarmClearedByCentre",
}
"""Commands whose request message names the schema of its response's data."""


def response_data_schema(doc: dict[str, Any], command: str) -> dict[str, Any] | None:
    """The schema of the data of an ok response to ``command`` (``x-response-data`` on its
    request message), refs inlined; None when the document does not say."""
    message = doc["channels"]["request"]["messages"].get(command)
    if message is None:
        return None
    data = resolve_ref(doc, message["$ref"]).get("x-response-data")
    return None if data is None else dict(inline_refs(doc, data))


def test_requests_and_responses(doc: dict[str, Any]) -> None:
    assert sorted(doc["channels"]["request"]["messages"]) == sorted(COMMANDS)
    assert sorted(doc["components"]["parameters"]["command"]["enum"]) == sorted(COMMANDS)
    for command in COMMANDS:
        typed = response_data_schema(doc, command)
        if command in TYPED_RESPONSES:
            assert typed == schema_for_component(doc, TYPED_RESPONSES[command]), command
        else:
            assert typed is None, command
    for command in COMMANDS:
        message = doc["components"]["messages"][
            doc["channels"]["request"]["messages"][command]["$ref"].rsplit("/", 1)[1]
        ]
        assert message["name"] == command
        assert message["correlationId"]["location"] == "$message.header#/correlationData"
        binding = message["bindings"]["mqtt"]
        assert {"responseTopic", "correlationData"} <= set(binding)
    with pytest.raises(AsyncApiError):
        match_channel(doc, "fieldlink/gw1/request/reboot")  # not a command of the contract
    assert match_channel(doc, "fieldlink/gw1/response/reboot").name == "response"
    receive = doc["operations"]["receiveRequest"]
    assert receive["reply"]["channel"]["$ref"] == "#/channels/response"
    task = doc["operations"]["receiveTask"]["reply"]
    assert task["address"]["location"] == "$message.header#/responseTopic"
    assert doc["channels"]["responseTopic"]["address"] is None


def test_pinned_base_and_gateway(doc: dict[str, Any]) -> None:
    topic = "a/gw/links/l/state"  # base "a", link "l" -- or base "a/gw/links", gateway "l"
    assert match_channel(doc, topic).name == "linkState"  # the most literal address wins
    assert match_channel(doc, topic, base="a/gw/links").name == "state"
    assert match_channel(doc, topic, gateway_id="gw").parameters["link"] == "l"
    with pytest.raises(AsyncApiError):
        match_channel(doc, "fieldlink/gw1/state", gateway_id="gw2")
    with pytest.raises(AsyncApiError):
        match_channel(doc, "elsewhere")


# --- (c) examples ----------------------------------------------------------------------------


def test_every_message_has_valid_examples(doc: dict[str, Any]) -> None:
    for name, message in doc["components"]["messages"].items():
        examples = message.get("examples", [])
        assert examples, f"{name} has no example"
        schema = inline_refs(doc, message)["payload"]
        for example in examples:
            assert not errors(schema, example["payload"]), (name, example.get("name"))


def task(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "task_id": "t-100",
        "units": ["zhang-wei"],
        "text": "到人民广场",
        "priority": "urgent",
        "created_at": T0,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def event(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "task_id": "t-100",
        "unit": "zhang-wei",
        "stage": "received",
        "at": T0,
        "since_created_s": 0.1,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def position(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "lat": 31.2304,
        "lon": 121.4737,
        "fix_time": T0,
        "received_at": T0,
        "source": "nmea",
        "link": "gps0",
    }
    body.update(changes)
    return body


def alarm(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "unit": "zhang-wei",
        "kind": "emergency",
        "state": "raised",
        "at": T0,
        "link": "vhf",
        "device": "vhf:BH4ZW-7",
        "position": position(source="aprs", link="vhf"),
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def cleared(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "state": "cleared",
        "position": None,
        "raised_at": T0,
        "cleared_by": "centre",
    }
    body.update(changes)
    return alarm(**body)


def report(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {"task_id": "t-100", "unit": "zhang-wei", "stage": "acknowledged"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


VALID = [
    ("Task", task()),
    ("Task", task(voice=True, category="fire", expires_at="2026-11-28T16:00:00+08:00")),
    ("Task", task(incident={"lat": -90, "lon": 180, "radius_m": 0.5})),
    ("Task", task(task_id="A" * 128, units=["a", "b_2", "c-3"])),
    ("StageEvent", event()),
    ("StageEvent", event(stage="on_scene", detail="35 m from the incident")),
    ("StageEvent", event(stage="escalated", target="on_scene", since_created_s=-1.5)),
    ("StageEvent", event(unit="", stage="rejected", since_created_s=None, detail="bad")),
    ("Position", position(lat=-90, lon=-180, satellites=0, hdop=0.9)),
    ("Position", position(alt_m=-500.0, speed_kmh=2000.0, course_deg=0.0, satellites=99, hdop=50)),
    ("Task", task(text="到人民广场\r\n东侧\t2 号口")),  # line breaks and tabs are fine
    ("TaskRejected", {"reason": "malformed JSON", "at": T0, "size": 0, "sha256": "0" * 64}),
    ("RequestUnits", {"transaction": "x" * 200}),
    ("RequestUnits", {"transaction": -(2**63) + 1}),
    ("Cancel", {"task_id": "t-100"}),
    ("Response", {"status": "ok"}),
    ("Response", {"status": "ok", "transaction": 0, "data": []}),
    ("RequestUnits", {"transaction": None}),
    ("RequestNearestUnits", {"lat": 0, "lon": 0, "limit": 1000}),
    ("StageEvent", event(stage="contacted", source="device", detail="oldest of 1 waiting: 已联系")),
    ("StageEvent", event(stage="acknowledged", source="centre", by="王调度")),
    ("StageEvent", event(stage="declined", source="centre")),  # by is optional
    ("StageEvent", event(stage="escalated", target="contacted")),
    ("Alarm", alarm()),
    ("Alarm", alarm(kind="other", position=None, detail="alarm bit 21")),
    ("Alarm", cleared()),
    ("Alarm", cleared(cleared_by="device", position=position(), detail="x" * 200)),
    ("AlarmSummary", {"alarms": []}),
    ("AlarmSummary", {"alarms": [alarm(), alarm(unit="li-na", kind="man_down")]}),
    ("AlarmClearedByCentre", cleared()),
    ("RequestReportStage", report()),
    ("RequestReportStage", report(stage="contacted", at="2026-11-28T16:00:41+08:00", by="王调度")),
    ("RequestReportStage", report(stage="closed", note="", transaction=7)),
    ("RequestAlarms", {"transaction": "a"}),
    ("RequestClearAlarm", {"unit": "zhang-wei", "kind": "low_battery"}),
    ("ReportStageResult", {"task_id": "t-100", "unit": "zhang-wei", "stage": "feedback", "at": T0}),
]

INVALID = [
    ("Task", task(task_id=None), "task_id"),
    ("Task", task(created_at="yesterday"), "date-time"),
    ("Task", task(created_at="2026-11-28T08:00:00"), "date-time"),  # no offset
    ("Task", task(units=[]), "units"),
    ("Task", task(units=["Zhang Wei"]), "units"),
    ("Task", task(units=["a", "a"]), "units"),
    ("Task", task(priority="high"), "priority"),
    ("Task", task(priority=None), "priority"),
    ("Task", task(text=""), "text"),
    ("Task", task(text="   "), "text"),
    ("Task", task(text="x" * 1001), "text"),
    ("Task", task(task_id="a" * 129), "task_id"),
    ("Task", task(task_id="t 1"), "task_id"),
    ("Task", task(voice="yes"), "voice"),
    ("Task", task(colour="red"), "colour"),
    ("Task", task(incident={"lat": 91, "lon": 0, "radius_m": 10}), "incident"),
    ("Task", task(incident={"lat": 0, "lon": 0, "radius_m": 0}), "incident"),
    ("Task", task(incident={"lat": 0, "lon": 0}), "incident"),
    ("StageEvent", event(stage="arrived"), "stage"),
    ("StageEvent", event(task_id=None), "task_id"),
    ("StageEvent", event(since_created_s=None), "since_created_s"),
    ("StageEvent", event(unit=""), "unit"),
    ("StageEvent", event(stage="escalated"), "target"),
    ("StageEvent", event(target="closed"), "target"),
    ("StageEvent", event(at="2026-11-28T08:00:00Z"), "at"),  # the gateway writes milliseconds
    ("Position", position(lat=91), "lat"),
    ("Position", position(lon=-180.5), "lon"),
    ("Position", position(fix_time="yesterday"), "fix_time"),
    ("Position", position(link=None), "link"),
    ("Position", position(speed_kmh=1.852e9), "speed_kmh"),  # seen in the wild
    ("Position", position(alt_m=1e9), "alt_m"),
    ("Position", position(satellites=99_999), "satellites"),
    ("Position", position(hdop=99.9), "hdop"),  # NMEA's "unknown"
    ("Task", task(text="a\x07b"), "text"),  # a control character
    ("Task", task(text="a\rb"), "text"),  # a carriage return without its line feed
    ("Task", task(text="\x85"), "text"),  # a C1 control character
    ("TaskRejected", {"reason": "x", "at": T0, "size": 3}, "sha256"),
    ("TaskRejected", {"reason": "x", "at": T0, "size": 3, "sha256": "A" * 64}, "sha256"),
    ("TaskRejected", {"reason": "", "at": T0, "size": 3, "sha256": "0" * 64}, "reason"),
    ("RequestUnits", {"transaction": "x" * 201}, "transaction"),
    ("RequestUnits", {"transaction": 1.5}, "transaction"),
    ("RequestUnits", {"transaction": {"id": 1}}, "transaction"),
    ("RequestUnits", {"transaction": 2**63}, "transaction"),
    ("LinkState", {"state": "maybe", "since": T0, "reconnects": 0}, "state"),
    ("Availability", {"state": "up", "since": T0, "via": "gps0"}, "state"),
    ("GatewayState", {"state": "online", "version": "0.1.0"}, "started_at"),
    ("Response", {"status": "error"}, "error"),
    ("Response", {"status": "maybe"}, "status"),
    ("Response", {"status": "ok", "transaction": None}, "transaction"),
    ("ClockSync", {"synchronized": "yes", "state": "ok"}, "synchronized"),
    ("RequestNearestUnits", {"lat": 0, "lon": 0, "limit": 0}, "limit"),
    ("RequestSendText", {"unit": "zhang-wei"}, "text"),
    ("Cancel", {"reason": "x"}, "task_id"),
    ("StageEvent", event(source="device"), "source"),  # not on a stage nobody reports
    ("StageEvent", event(stage="failed", by="王调度"), "by"),
    ("StageEvent", event(stage="acknowledged", source="gateway"), "source"),
    ("StageEvent", event(stage="on_scene", source="gateway"), "source"),
    ("StageEvent", event(stage="acknowledged", source="device", by="王调度"), "source"),
    ("StageEvent", event(stage="acknowledged", by="王调度"), "source"),
    ("StageEvent", event(stage="closed", source="centre", by=""), "by"),
    ("StageEvent", event(stage="escalated", target="declined"), "target"),
    ("Alarm", alarm(kind="fire"), "kind"),
    ("Alarm", alarm(state="gone"), "state"),
    ("Alarm", alarm(state="cleared"), "raised_at"),
    ("Alarm", alarm(state="cleared", raised_at=T0), "cleared_by"),
    ("Alarm", alarm(cleared_by="centre"), "cleared_by"),  # a raise is cleared by nobody
    ("Alarm", cleared(position=position()), "position"),  # the centre has no fix to give
    ("Alarm", cleared(cleared_by="radio"), "cleared_by"),
    ("Alarm", alarm(detail="x" * 201), "detail"),
    ("Alarm", alarm(device=""), "device"),
    ("Alarm", alarm(link=None), "link"),
    ("Alarm", alarm(position={"lat": 1, "lon": 2}), "position"),
    ("Alarm", alarm(at="2026-11-28T08:00:00Z"), "at"),
    ("AlarmSummary", {}, "alarms"),
    ("AlarmSummary", {"alarms": [cleared()]}, "state"),
    ("AlarmClearedByCentre", cleared(cleared_by="device"), "cleared_by"),
    ("AlarmClearedByCentre", alarm(), "state"),
    ("RequestReportStage", report(stage="received"), "stage"),
    ("RequestReportStage", report(stage="arrived"), "stage"),
    ("RequestReportStage", report(unit=None), "unit"),
    ("RequestReportStage", report(task_id=None), "task_id"),
    ("RequestReportStage", report(at="yesterday"), "at"),
    ("RequestReportStage", report(by=""), "by"),
    ("RequestReportStage", report(by="x" * 65), "by"),
    ("RequestReportStage", report(note="x" * 501), "note"),
    ("RequestReportStage", report(source="centre"), "source"),
    ("RequestClearAlarm", {"unit": "zhang-wei", "kind": "fire"}, "kind"),
    ("RequestClearAlarm", {"unit": "zhang-wei"}, "kind"),
    ("RequestClearAlarm", {"kind": "emergency"}, "unit"),
    ("RequestAlarms", {"unit": "zhang-wei"}, "unit"),
    ("ReportStageResult", {"task_id": "t-100", "unit": "zhang-wei", "stage": "feedback"}, "at"),
]


def test_health_carries_the_alarm_counters(doc: dict[str, Any]) -> None:
    schema = schema_for_component(doc, "Health")
    (example,) = doc["components"]["messages"]["Health"]["examples"]
    health = example["payload"]
    assert not errors(schema, health)
    assert set(health["alarms"]) == {"raised", "repeats", "overflow"}
    without = {k: v for k, v in health.items() if k != "alarms"}
    assert any("alarms" in e for e in errors(schema, without))
    for counter in ("raised", "repeats", "overflow"):
        wrong = {**health, "alarms": {**health["alarms"], counter: -1}}
        assert any(counter in e for e in errors(schema, wrong)), counter


@pytest.mark.parametrize(("schema", "payload"), VALID)
def test_valid_examples(doc: dict[str, Any], schema: str, payload: dict[str, object]) -> None:
    assert not errors(schema_for_component(doc, schema), payload)


@pytest.mark.parametrize(("schema", "payload", "about"), INVALID)
def test_invalid_examples(
    doc: dict[str, Any], schema: str, payload: dict[str, object], about: str
) -> None:
    found = errors(schema_for_component(doc, schema), payload)
    assert found, f"{schema} accepted {payload}"
    assert any(about in e for e in found), found


# --- (b) what the daemon really publishes ----------------------------------------------------

BASE = "fieldlink/gw1"
REPLIES = "test-replies"
UNREADABLE = b"[[["
"""A dispatch message whose task id cannot be read: reported on tasks/rejected."""
PUBLISHED_TODAY = {
    "state",
    "info",
    "health",
    "linkState",
    "unitAvailability",
    "unitPosition",
    "taskEvents",
    "taskRejected",
    "response",
    "responseTopic",
    "unitAlarm",
    "alarms",
}


class PropertiesCollector(Collector):
    """A collector that also keeps the MQTT 5 Correlation Data of what it receives."""

    def __init__(self, host: str, port: int, topics: list[str]) -> None:
        super().__init__(host, port, topics)
        self.correlation: dict[str, list[bytes | None]] = defaultdict(list)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        self.correlation[msg.topic].append(getattr(msg.properties, "CorrelationData", None))


def publish(
    coll: Collector, topic: str, payload: object, response_topic: str = "", correlation: bytes = b""
) -> None:
    props = None
    if response_topic:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = response_topic
        props.CorrelationData = correlation
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    coll.client.publish(topic, data, qos=1, properties=props).wait_for_publish(5)


def validate_received(doc: dict[str, Any], message: Received) -> tuple[str, list[str]]:
    """The channel a message belongs to and what is wrong with its payload (for a response
    whose command's request message names `x-response-data`, its data too)."""
    data_schema = None
    if message.topic.startswith(f"{REPLIES}/"):
        channel = "responseTopic"
        schema = inline_refs(doc, doc["channels"][channel]["messages"]["response"])["payload"]
    else:
        match = match_channel(doc, message.topic)
        channel = match.name
        schema = schema_for_topic(doc, message.topic)
        if channel == "response":
            data_schema = response_data_schema(doc, match.parameters["command"])
    try:
        payload = message.json()
    except ValueError as exc:
        return channel, [f"not JSON: {exc}"]
    wrong = errors(schema, payload)
    if data_schema is not None and payload.get("status") == "ok":
        wrong += [f"data/{e}" for e in errors(data_schema, payload.get("data"))]
    return channel, wrong


def request(coll: Collector, command: str, body: dict[str, Any], transaction: str) -> Any:
    """Publish a request and return its response (the one with its transaction)."""
    publish(coll, f"{BASE}/request/{command}", {"transaction": transaction, **body})
    topic = f"{BASE}/response/{command}"

    def mine(m: Received) -> bool:
        return m.topic == topic and m.json().get("transaction") == transaction

    got = coll.wait_for(lambda ms: any(mine(m) for m in ms), 10, f"{command} {transaction}")
    return next(m.json() for m in got if mine(m))


def report_by_voice_and_raise_an_alarm(
    doc: dict[str, Any], coll: Collector, tnc: KissTnc, mosquitto: Mosquitto
) -> list[Received]:
    """A stage reported by the centre (and two refused), then a Mic-E emergency raised and
    cleared by the centre, through the daemon. Returns the retained summary as a subscriber
    connecting while the alarm was raised saw it (the rest is in ``coll``)."""
    publish(coll, f"{BASE}/tasks/dispatch", task(task_id="t-voice", units=["zhang-wei"]))
    coll.wait_for(
        lambda ms: any(m.topic == f"{BASE}/tasks/t-voice/events" for m in ms), 10, "t-voice"
    )
    topic = f"{BASE}/request/report_stage"
    heard = report(task_id="t-voice", by="王调度", note="语音")
    backwards = report(task_id="t-voice")
    not_an_answer = report(task_id="t-voice", stage="received")
    assert not errors(schema_for_topic(doc, topic), heard)
    assert not errors(schema_for_topic(doc, topic), backwards)  # only the daemon knows
    assert [e.split(":")[0] for e in errors(schema_for_topic(doc, topic), not_an_answer)] == [
        "stage"
    ]
    ok = request(coll, "report_stage", heard, "r-ok")
    assert ok["status"] == "ok", ok
    assert (ok["data"]["stage"], ok["data"]["unit"]) == ("acknowledged", "zhang-wei")
    refused = request(coll, "report_stage", backwards, "r-again")
    assert refused["status"] == "error"
    assert "backwards" in refused["error"]
    refused = request(coll, "report_stage", not_an_answer, "r-received")
    assert refused["status"] == "error"
    assert "stage must be one of" in refused["error"]

    tnc.send([mic_e(ZHANG)])
    alarm_topic = f"{BASE}/units/zhang-wei/alarm"
    got = coll.wait_for(lambda ms: any(m.topic == alarm_topic for m in ms), 15, "the alarm raised")
    (raised,) = [m.json() for m in got if m.topic == alarm_topic]
    wait_until(lambda: coll.last_json(f"{BASE}/alarms") == {"alarms": [raised]}, 10, "the summary")
    coll.wait_for(
        lambda ms: any(m.topic == f"{BASE}/health" and m.json()["alarms"]["raised"] for m in ms),
        10,
        "the alarm counted in health",
    )
    fresh = Collector(mosquitto.host, mosquitto.port, [f"{BASE}/alarms"]).start()
    try:
        retained = fresh.wait_for(lambda ms: len(ms) >= 1, 10, "the retained summary")
    finally:
        fresh.stop()
    assert request(coll, "alarms", {}, "a-1")["data"] == {"alarms": [raised]}
    clear = {"unit": "zhang-wei", "kind": "emergency"}
    assert not errors(schema_for_topic(doc, f"{BASE}/request/clear_alarm"), clear)
    cleared = request(coll, "clear_alarm", clear, "c-1")
    assert (cleared["data"]["state"], cleared["data"]["raised_at"]) == ("cleared", raised["at"])
    coll.wait_for(lambda ms: sum(m.topic == alarm_topic for m in ms) >= 2, 10, "the alarm cleared")
    wait_until(lambda: coll.last_json(f"{BASE}/alarms") == {"alarms": []}, 10, "no alarms")
    return retained


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_daemon_payloads_match_the_document(
    doc: dict[str, Any], tmp_path: Path, mosquitto: Mosquitto
) -> None:
    gps_path = tmp_path / "gps0"
    gps = NmeaGps(profile="ublox", rate_hz=10, speed_kmh=36)
    pty = GpsPty(gps_path)
    pty.open()
    tnc = KissTnc()
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[gateway]
id = "gw1"
data_dir = "{tmp_path / "data"}"

[mqtt]
url = "{mosquitto.url}"
health_interval_s = 0.5
response_topic_prefixes = ["{REPLIES}"]
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[[links]]
name = "gps0"
protocol = "nmea"
url = "{gps_path}"
unit = "car-1"

{aprs_link(tnc.url)}
[[units]]
id = "car-1"
name = "Car 1"

[[units]]
id = "zhang-wei"
name = "张伟"
devices = ["vhf:{ZHANG}"]
""",
        encoding="utf-8",
    )
    coll = PropertiesCollector(mosquitto.host, mosquitto.port, [f"{BASE}/#", f"{REPLIES}/#"])
    coll.start()
    daemon = GatewayProcess(config, tmp_path / "gateway.log")
    try:
        daemon.start()
        coll.wait_for(
            lambda ms: (
                {m.topic for m in ms if b'"up"' in m.payload}
                >= {f"{BASE}/links/gps0/state", f"{BASE}/links/vhf/state"}
            ),
            15,
            "links up",
        )

        def seen(topic: str) -> bool:
            return any(m.topic == topic for m in coll.snapshot())

        for _ in range(50):
            pty.write(gps.epoch())
            if seen(f"{BASE}/units/car-1/position") and seen(f"{BASE}/units/car-1/availability"):
                break
            time.sleep(0.1)
        good = task(
            task_id="t-ok",
            units=["car-1"],
            incident={"lat": 31.2304, "lon": 121.4737, "radius_m": 200, "address": "人民广场"},
        )
        bad = task(task_id="t-bad", units=["car-1"], priority="high", created_at="yesterday")
        publish(coll, f"{BASE}/tasks/dispatch", good, f"{REPLIES}/dispatch", b"corr-ok")
        publish(coll, f"{BASE}/tasks/dispatch", bad, f"{REPLIES}/dispatch", b"corr-bad")
        publish(coll, f"{BASE}/tasks/cancel", {"task_id": "t-unknown"})
        publish(coll, f"{BASE}/tasks/dispatch", UNREADABLE)  # no task id: tasks/rejected
        publish(coll, f"{BASE}/request/units", {"transaction": "tx-1"}, f"{REPLIES}/units", b"u")
        publish(coll, f"{BASE}/request/task_status", {"task_id": "t-ok"})
        publish(coll, f"{BASE}/request/nearest_units", {"lat": 31.23, "lon": 121.47, "limit": 2})
        publish(coll, f"{BASE}/request/poll_location", {"unit": "car-1"})  # NMEA cannot: error
        publish(coll, f"{BASE}/request/reboot", {})  # not a command: answered with an error
        coll.wait_for(
            lambda ms: (
                {m.topic for m in ms}
                >= {
                    f"{BASE}/tasks/t-ok/events",
                    f"{BASE}/tasks/t-bad/events",
                    f"{BASE}/tasks/t-unknown/events",
                    f"{BASE}/tasks/rejected",
                    f"{BASE}/response/units",
                    f"{BASE}/response/task_status",
                    f"{BASE}/response/nearest_units",
                    f"{BASE}/response/poll_location",
                    f"{BASE}/response/reboot",
                    f"{REPLIES}/dispatch",
                    f"{REPLIES}/units",
                    f"{BASE}/health",
                    f"{BASE}/info",
                }
            ),
            20,
            "events, responses and health",
        )
        retained = report_by_voice_and_raise_an_alarm(doc, coll, tnc, mosquitto)
        pty.write(gps.epoch())
        coll.wait_for(
            lambda ms: sum(m.topic == f"{BASE}/health" for m in ms) >= 3, 10, "three healths"
        )
        assert daemon.terminate() == 0
        coll.wait_for(
            lambda ms: any(m.topic == f"{BASE}/state" and b"offline" in m.payload for m in ms),
            10,
            "offline",
        )
    finally:
        daemon.ensure_stopped()
        coll.stop()
        pty.close()
        tnc.close()

    messages = coll.snapshot()
    ours = {f"{BASE}/tasks/dispatch", f"{BASE}/tasks/cancel"}
    seen_channels: dict[str, int] = defaultdict(int)
    problems: list[str] = []
    for message in messages:
        if message.topic in ours or message.topic.startswith(f"{BASE}/request/"):
            continue  # what this test published itself
        channel, wrong = validate_received(doc, message)
        seen_channels[channel] += 1
        assert actions_for_channel(doc, channel) == {"send"}, message.topic
        problems += [f"{message.topic} {message.payload[:300]!r}: {w}" for w in wrong]
    assert not problems, "\n".join(problems)
    assert set(seen_channels) >= PUBLISHED_TODAY, PUBLISHED_TODAY - set(seen_channels)
    # The summary as a subscriber connecting later gets it: retained, and by the document.
    (summary,) = retained
    assert summary.retain
    assert validate_received(doc, summary) == ("alarms", [])
    assert [a["state"] for a in summary.json()["alarms"]] == ["raised"]
    # The responses whose data the document types were checked as such.
    answered = {m.topic.rsplit("/", 1)[1] for m in messages if "/response/" in m.topic}
    for command in TYPED_RESPONSES:
        assert command in answered, command
        assert response_data_schema(doc, command) is not None, command

    # What the daemon published is exactly what the document's stage schema expects.
    def stages(task_id: str) -> list[str]:
        topic = f"{BASE}/tasks/{task_id}/events"
        return [m.json()["stage"] for m in messages if m.topic == topic]

    assert stages("t-ok")[0] == "received"
    assert stages("t-bad") == ["rejected"]
    assert stages("t-unknown") == ["rejected"]
    # What the centre reported by voice is published as said, with who said it.
    voice = [m.json() for m in messages if m.topic == f"{BASE}/tasks/t-voice/events"]
    (heard,) = [e for e in voice if e["stage"] == "acknowledged"]
    assert (heard["source"], heard["by"]) == ("centre", "王调度")
    assert heard["detail"] == "reported by the centre: 语音"
    assert "delivered" not in [e["stage"] for e in voice]  # the centre's word is no receipt
    # The emergency: raised by the radio, cleared by the centre.
    raised, cleared = [m.json() for m in messages if m.topic == f"{BASE}/units/zhang-wei/alarm"]
    assert (raised["state"], raised["device"]) == ("raised", f"vhf:{ZHANG}")
    assert (cleared["state"], cleared["cleared_by"]) == ("cleared", "centre")
    counted = [m.json()["alarms"] for m in messages if m.topic == f"{BASE}/health"]
    assert {"raised": 1, "repeats": 0, "overflow": 0} in counted
    # The unreadable task is reported (at least once, like every event) by size and hash.
    reports = [m.json() for m in messages if m.topic == f"{BASE}/tasks/rejected"]
    assert reports
    for report in reports:
        assert report["size"] == len(UNREADABLE)
        assert report["sha256"] == hashlib.sha256(UNREADABLE).hexdigest()
        assert "JSON" in report["reason"]
    # The task this test called invalid is invalid by the document too, and the valid one valid.
    dispatch_schema = schema_for_topic(doc, f"{BASE}/tasks/dispatch")
    assert not errors(dispatch_schema, good)
    assert {e.split(":")[0] for e in errors(dispatch_schema, bad)} == {"priority", "created_at"}
    # Responses on the MQTT 5 Response Topic carry the request's Correlation Data.
    assert sorted(c or b"" for c in coll.correlation[f"{REPLIES}/dispatch"]) == [
        b"corr-bad",
        b"corr-ok",
    ]
    assert coll.correlation[f"{REPLIES}/units"] == [b"u"]
    units = coll.last_json(f"{BASE}/response/units")
    assert units["status"] == "ok"
    assert units["transaction"] == "tx-1"
    assert coll.last_json(f"{BASE}/response/reboot")["status"] == "error"


def test_a_payload_that_is_not_in_the_document_is_caught(doc: dict[str, Any]) -> None:
    """The validation helper used above fails on a drifted payload (so the broker test can)."""
    drifted = Received(f"{BASE}/units/car-1/position", b'{"lat":1,"lon":2}', True, 0.0)
    channel, wrong = validate_received(doc, drifted)
    assert channel == "unitPosition"
    assert any("fix_time" in w for w in wrong)
    with pytest.raises(ValidationError):
        validator(schema_for_topic(doc, f"{BASE}/state")).validate({"state": "gone"})
