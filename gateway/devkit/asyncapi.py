"""The AsyncAPI document of the MQTT interface (``gateway/asyncapi.json``), read as data.

The document is the machine-readable form of SPEC section 5. This module finds the channel
a concrete topic belongs to and hands out its payload JSON Schema with every local ``$ref``
inlined, so the schema stands alone for any JSON Schema (draft 2020-12) validator::

    doc = load_asyncapi()
    schema = schema_for_topic(doc, "fieldlink/gw1/tasks/dispatch")
    jsonschema.Draft202012Validator(schema, format_checker=FormatChecker()).validate(task)

It imports no validator itself (``jsonschema`` is a test dependency only), and it reads the
file from the source tree: ``docs/`` is not installed with the package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "asyncapi.json"
"""The document, installed with the package (``docs/asyncapi.json`` links to it)."""

MULTI_LEVEL_PARAMETERS = frozenset({"base"})
"""Address parameters that may span several topic levels (``mqtt.base_topic`` may be
``city/east``); every other parameter is exactly one level."""

_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\}")


class AsyncApiError(LookupError):
    """A reference that does not resolve, or a topic that no channel describes."""


def load_asyncapi(path: Path | None = None) -> dict[str, Any]:
    """The document as a dict (a fresh copy on each call)."""
    doc = json.loads((path or DEFAULT_PATH).read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise AsyncApiError(f"{path or DEFAULT_PATH}: not a JSON object")
    return doc


def resolve_ref(doc: Mapping[str, Any], ref: str) -> Any:
    """The node a local reference (``#/components/schemas/Task``) points at."""
    if not ref.startswith("#"):
        raise AsyncApiError(f"only local references are used here, not {ref!r}")
    node: Any = doc
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise AsyncApiError(f"{ref} does not resolve (no {key!r})")
    return node


def inline_refs(doc: Mapping[str, Any], node: Any, _seen: tuple[str, ...] = ()) -> Any:
    """A deep copy of ``node`` with every ``{"$ref": ...}`` replaced by what it points at.

    A ``$ref`` beside other keywords is merged under ``allOf`` so no keyword is lost.
    Circular references raise :class:`AsyncApiError` (the document has none).
    """
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in _seen:
                raise AsyncApiError(f"circular reference {' -> '.join((*_seen, ref))}")
            target = inline_refs(doc, resolve_ref(doc, ref), (*_seen, ref))
            rest = {k: inline_refs(doc, v, _seen) for k, v in node.items() if k != "$ref"}
            return {**rest, "allOf": [target, *rest.get("allOf", [])]} if rest else target
        return {k: inline_refs(doc, v, _seen) for k, v in node.items()}
    if isinstance(node, list):
        return [inline_refs(doc, item, _seen) for item in node]
    return node


def address_parameters(address: str) -> list[str]:
    """The parameter names in a channel address, in order."""
    return _PARAMETER.findall(address)


def address_pattern(address: str) -> re.Pattern[str]:
    """A regex matching the concrete topics of a channel address, one group per parameter."""
    parts: list[str] = []
    last = 0
    for found in _PARAMETER.finditer(address):
        parts.append(re.escape(address[last : found.start()]))
        level = "[^+#\0]+?" if found.group(1) in MULTI_LEVEL_PARAMETERS else "[^/+#\0]+"
        parts.append(f"(?P<{found.group(1)}>{level})")
        last = found.end()
    parts.append(re.escape(address[last:]))
    return re.compile("".join(parts))


@dataclass(frozen=True, slots=True)
class ChannelMatch:
    """A concrete topic matched to a channel: its key, the channel, the parameter values."""

    name: str
    channel: Mapping[str, Any]
    parameters: Mapping[str, str]


def _specificity(address: str) -> int:
    return len(_PARAMETER.sub("", address))


def match_channel(
    doc: Mapping[str, Any],
    topic: str,
    *,
    base: str | None = None,
    gateway_id: str | None = None,
) -> ChannelMatch:
    """The channel whose address matches ``topic``; the most literal address wins.

    ``base`` and ``gateway_id`` pin those parameters (useful when the base topic has several
    levels). A parameter declared with ``enum`` only matches the values listed.
    Channels without an address (the MQTT 5 Response Topic) never match.
    """
    pinned = {"base": base, "gatewayId": gateway_id}
    best: tuple[int, ChannelMatch] | None = None
    for name, channel in doc.get("channels", {}).items():
        address = channel.get("address")
        if not isinstance(address, str):
            continue
        found = address_pattern(address).fullmatch(topic)
        if found is None:
            continue
        values = found.groupdict()
        if any(want is not None and values.get(key) != want for key, want in pinned.items()):
            continue
        declared = channel.get("parameters", {})
        if not all(_allowed(doc, declared.get(key, {}), value) for key, value in values.items()):
            continue
        score = _specificity(address)
        if best is None or score > best[0]:
            best = (score, ChannelMatch(name, channel, values))
    if best is None:
        raise AsyncApiError(f"no channel of the AsyncAPI document matches {topic!r}")
    return best[1]


def _allowed(doc: Mapping[str, Any], parameter: Mapping[str, Any], value: str) -> bool:
    if "$ref" in parameter:
        parameter = resolve_ref(doc, parameter["$ref"])
    enum = parameter.get("enum")
    return enum is None or value in enum


def message_for_topic(
    doc: Mapping[str, Any],
    topic: str,
    *,
    base: str | None = None,
    gateway_id: str | None = None,
) -> dict[str, Any]:
    """The message object (refs inlined) for ``topic``.

    A channel with several messages (``request/{command}``) keys them by a parameter value:
    the message whose key equals one of the topic's parameter values is chosen.
    """
    match = match_channel(doc, topic, base=base, gateway_id=gateway_id)
    messages: Mapping[str, Any] = match.channel.get("messages", {})
    if len(messages) == 1:
        (chosen,) = messages.values()
    else:
        keyed = [messages[v] for v in match.parameters.values() if v in messages]
        if len(keyed) != 1:
            raise AsyncApiError(f"channel {match.name}: no single message for {topic!r}")
        chosen = keyed[0]
    message = inline_refs(doc, chosen)
    if not isinstance(message, dict):
        raise AsyncApiError(f"channel {match.name}: a message is not an object")
    return message


def schema_for_topic(
    doc: Mapping[str, Any],
    topic: str,
    *,
    base: str | None = None,
    gateway_id: str | None = None,
) -> dict[str, Any]:
    """The payload JSON Schema (self-contained, refs inlined) of messages on ``topic``."""
    payload = message_for_topic(doc, topic, base=base, gateway_id=gateway_id).get("payload")
    if not isinstance(payload, dict):
        raise AsyncApiError(f"{topic!r}: the message has no payload schema")
    return payload


def schema_for_component(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A schema of ``components.schemas`` by name, refs inlined (``"Task"``, ``"Response"``)."""
    schema = inline_refs(doc, {"$ref": f"#/components/schemas/{name}"})
    if not isinstance(schema, dict):
        raise AsyncApiError(f"components.schemas.{name} is not an object")
    return schema


def actions_for_channel(doc: Mapping[str, Any], channel_name: str) -> set[str]:
    """The actions (``send``, ``receive``) of the operations on a channel."""
    target = f"#/channels/{channel_name}"
    return {
        op["action"]
        for op in doc.get("operations", {}).values()
        if op.get("channel", {}).get("$ref") == target
    }
