"""The protocol pages' generated sections, derived from the specs so the docs cannot disagree.

Each page named by a :class:`~gateway.drivers.spec.ProtocolSpec` (``docs/<spec.docs>``) holds,
between ``<!-- options:begin -->`` and ``<!-- options:end -->``, what :func:`render_section`
makes of its spec: whether it is built, the link URLs it runs over, its address rule, its
offline time, its capabilities and the table of its link options (key, type, default, the
link URLs it applies to, what it does). ``docs/protocols/README.md`` holds the index of every
protocol between the same markers. The rest of each page is prose and stays as written.

``python -m gateway.drivers.docs --check`` says which pages differ from their specs (exit 1);
``--write`` rewrites the generated sections (and adds one, with a heading, to a page that has
none). ``tests/test_protocol_specs.py`` runs the check.

An option's description is its :attr:`~gateway.options.OptionSpec.doc`; keys that several
protocols share (``offline_after_s``, the dial-in keys) are described once in
:data:`OPTION_DESCRIPTIONS`. Every option of every spec must have one (the test says which
is missing). Capability descriptions are the attribute
docstrings of :class:`~gateway.drivers.spec.Capabilities`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Final

from gateway.config.tables import LINK_OPTIONS, SERIAL_OPTIONS
from gateway.drivers.registry import PROTOCOLS
from gateway.drivers.spec import ALL_TRANSPORTS, Capabilities, ProtocolSpec
from gateway.options import REQUIRED, OptionSpec

BEGIN: Final = "<!-- options:begin -->"
END: Final = "<!-- options:end -->"
INDEX: Final = "protocols/README.md"
"""The index of every protocol, relative to ``docs/``."""
DOCS_DIR: Final = Path(__file__).resolve().parents[2] / "docs"
"""``docs/`` of a source checkout."""

OPTION_DESCRIPTIONS: Final[Mapping[str, str]] = {
    # every protocol
    "offline_after_s": "Seconds of silence after which a device of this link counts as offline "
    "(its unit's `availability`).",
    # dial-in links (gateway/drivers/spec.py, dial_in_options; gateway/sessions.py)
    "max_connections": "Peers served at once (TCP connections, or UDP peer addresses); more are "
    "refused at once and counted in `health`.",
    "idle_timeout_s": "A dial-in session that received nothing for this many seconds is closed.",
    "allow": "Device addresses that may dial in; empty: the devices `[[units]]` list on this link.",
    "register": '`"allow-list"`: only the devices of `allow` (or of the units) may dial in; '
    '`"open"`: any device may, and becomes an implicit unit.',
    # aprs
    "callsign": "The gateway's own callsign-SSID: the source of every frame it sends.",
    "path": "Digipeater path of what the gateway sends (at most 8 entries).",
    "retry_intervals_s": "An unacked message is sent again after each interval in turn, until an "
    "ack or a reject arrives or the intervals run out.",
    "kiss_port": "The TNC port frames are sent on and taken from; frames of other ports are "
    "ignored.",
    "channel_baud": "Bit rate of the radio channel, for the gateway's airtime accounting (it "
    "hands the TNC one frame at a time).",
    "txdelay_s": "Key-up delay counted in each frame's airtime (match the TNC's TXDELAY).",
    "txtail_s": "Tail counted in each frame's airtime (the TNC's TXtail).",
    "gap_s": "Pause after each frame's airtime before the next (the TNC's persistence and slot "
    "time).",
    # nmea
    "unit": "The unit this receiver's positions belong to; default: the unit whose `devices` "
    "list the link, else a unit named after the link.",
    "max_line_bytes": "Longest sentence accepted, `$` and CR LF included; longer lines are "
    "counted and dropped (82 is the NMEA limit).",
    "require_checksum": "Drop sentences without a `*hh` checksum (a wrong checksum is always "
    "dropped).",
}
"""What each link option does, by key (one key means the same on every protocol)."""

KIND_NAMES: Final[Mapping[str, str]] = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "str": "string",
    "str_list": "array of strings",
    "float_list": "array of numbers",
}
_URL_FORMS: Final[Mapping[str, str]] = {
    "serial": "a device path (`/dev/ttyUSB0`)",
    "tcp": "`tcp://host:port`",
    "udp": "`udp://host:port`",
    "listen": "`listen://host:port`",
    "udp-listen": "`udp-listen://host:port`",
}
_TRANSPORT_ORDER: Final = tuple(_URL_FORMS)


def _ordered(transports: frozenset[str]) -> list[str]:
    return sorted(
        transports,
        key=lambda t: _TRANSPORT_ORDER.index(t) if t in _TRANSPORT_ORDER else len(_URL_FORMS),
    )


def _url_forms(transports: frozenset[str]) -> str:
    return ", ".join(_URL_FORMS.get(t, f"`{t}://`") for t in _ordered(transports))


def _scheme(transport: str) -> str:
    return "a device path" if transport == "serial" else f"`{transport}://`"


def _rst_to_md(text: str) -> str:
    """A docstring's text as one Markdown line: ``x`` becomes `x`, :func:`x` becomes `x`."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return " ".join(text.replace("``", "`").split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _value(value: object) -> str:
    """A default as it would be written in config.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render_default(option: OptionSpec) -> str:
    if option.default is REQUIRED:
        return "required"
    if option.default is None:
        return "(see meaning)"
    return f"`{_value(option.default)}`"


def applies_to(spec: ProtocolSpec, option: OptionSpec) -> str:
    """The link URLs of ``spec`` an option is read on."""
    if option.transports is None or spec.transports <= option.transports:
        return "every link"
    usable = spec.transports & option.transports
    if not usable:
        needs = " or ".join(_scheme(t) for t in _ordered(option.transports))
        return f"none: needs {needs}, which {spec.name} links do not use"
    return ", ".join(_scheme(t) for t in _ordered(usable))


def describe(key: str, option: OptionSpec | None = None) -> str:
    """The option's own ``doc``, else the shared description of ``key``."""
    if option is not None and option.doc:
        return option.doc
    try:
        return OPTION_DESCRIPTIONS[key]
    except KeyError:
        raise LookupError(
            f"link option {key!r} has no description: give its OptionSpec a doc= (or, for a key "
            "several protocols share, add it to OPTION_DESCRIPTIONS in gateway/drivers/docs.py)"
        ) from None


def render_options(spec: ProtocolSpec) -> str:
    """The Markdown table of a spec's link options."""
    lines = [
        "| key | type | default | applies to | meaning |",
        "|---|---|---|---|---|",
    ]
    for key, option in spec.options.items():
        cells = (
            f"`{key}`",
            KIND_NAMES[option.kind],
            render_default(option),
            applies_to(spec, option),
            describe(key, option),
        )
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


@cache
def capability_descriptions() -> Mapping[str, str]:
    """The attribute docstrings of :class:`Capabilities`, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Capabilities)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, str] = {}
    for stmt, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[stmt.target.id] = _rst_to_md(after.value.value)
    return found


def render_capabilities(capabilities: Capabilities) -> str:
    """The Markdown table of what a protocol's devices can do."""
    descriptions = capability_descriptions()
    lines = ["| capability | value | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(capabilities):
        value = getattr(capabilities, f.name)
        shown = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        meaning = descriptions.get(f.name, "")
        lines.append(f"| `{f.name}` | {shown} | {_cell(meaning)} |")
    return "\n".join(lines) + "\n"


def render_address(spec: ProtocolSpec) -> str:
    """The address rule in words, with the spec's example."""
    if spec.address is None:
        return (
            "none: the link is its one device; its `unit` key (or the unit that lists the link) "
            "names the unit"
        )
    rule = _rst_to_md((inspect.getdoc(spec.address) or "").split("\n\n")[0])
    example = spec.address_example
    normalised = spec.address(example)
    shown = f"`{example}`" if normalised == example else f"`{example}` (kept as `{normalised}`)"
    return f"{rule} Example: {shown}."


def _spec_module_path(spec: ProtocolSpec) -> str:
    return f"gateway/drivers/{spec.name}/spec.py"


def render_section(spec: ProtocolSpec) -> str:
    """Everything between the markers of ``docs/<spec.docs>``."""
    if spec.built:
        status = f"built (`{spec.driver}`)"
    else:
        status = (
            f'not built yet: `check-config` and `run` refuse a link with `protocol = "{spec.name}"`'
        )
    common = ", ".join(f"`{key}`" for key in LINK_OPTIONS)
    serial = ", ".join(
        f"`{key}`"
        + (f" (default {_value(spec.serial_defaults[key])})" if key in spec.serial_defaults else "")
        for key in SERIAL_OPTIONS
    )
    offline = f"{spec.offline_after_s:g} s of silence"
    if "offline_after_s" in spec.options:
        offline += ", unless the link's `offline_after_s` says otherwise"
    return "".join(
        [
            f"<!-- Generated from {_spec_module_path(spec)} by"
            " `python -m gateway.drivers.docs --write`: change the spec, not this section. -->\n",
            "\n",
            f"**`{spec.name}`**: {_rst_to_md(spec.title)}.\n",
            "\n",
            "| | |\n|---|---|\n",
            f"| status | {_cell(status)} |\n",
            f"| link URLs | {_cell(_url_forms(spec.transports))} |\n",
            f"| device address | {_cell(render_address(spec))} |\n",
            f"| offline after | {_cell(offline)} |\n",
            "\n",
            "What its devices can do:\n",
            "\n",
            render_capabilities(spec.capabilities),
            "\n",
            f"Link options, besides the keys every link takes ({common}; and {serial} on a"
            " device path):\n",
            "\n",
            render_options(spec),
        ]
    )


def render_index(protocols: Mapping[str, ProtocolSpec] = PROTOCOLS) -> str:
    """Everything between the markers of ``docs/protocols/README.md``."""
    index_dir = Path(INDEX).parent
    lines = [
        "<!-- Generated from gateway/drivers/registry.py by"
        " `python -m gateway.drivers.docs --write`: change the specs, not this section. -->",
        "",
        "| protocol | what speaks it | status | link URLs | device address | page |",
        "|---|---|---|---|---|---|",
    ]
    for spec in protocols.values():
        status = "built" if spec.built else "not built yet"
        urls = (
            "any"
            if spec.transports == ALL_TRANSPORTS
            else ", ".join(_scheme(t) for t in _ordered(spec.transports))
        )
        address = f"`{spec.address_example}`" if spec.address is not None else "the link itself"
        page = Path(os.path.relpath(spec.docs, index_dir)).as_posix()
        cells = (f"`{spec.name}`", spec.title, status, urls, address, f"[{page}]({page})")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def generated(protocols: Mapping[str, ProtocolSpec] = PROTOCOLS) -> dict[str, str]:
    """Page (relative to ``docs/``) -> the section its markers must hold."""
    pages = {INDEX: render_index(protocols)}
    for spec in protocols.values():
        if spec.docs in pages:
            raise ValueError(f"{spec.name}: docs page {spec.docs} is also another's")
        pages[spec.docs] = render_section(spec)
    return pages


def extract(text: str) -> str | None:
    """The section between the markers of a page; None when it has none."""
    if BEGIN not in text and END not in text:
        return None
    start, end = _markers(text)
    return text[start + len(BEGIN) + 1 : end]


def _markers(text: str) -> tuple[int, int]:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"expected one {BEGIN} and one {END}")
    start, end = text.index(BEGIN), text.index(END)
    if end < start or text[start + len(BEGIN)] != "\n":
        raise ValueError(f"expected {BEGIN}, a line break, the section, then {END}")
    return start, end


def splice(text: str, section: str, heading: str = "## Link options") -> str:
    """``text`` with ``section`` between its markers (appended under ``heading`` if none)."""
    if BEGIN not in text and END not in text:
        return f"{text.rstrip()}\n\n{heading}\n\n{BEGIN}\n{section}{END}\n"
    start, end = _markers(text)
    return f"{text[:start]}{BEGIN}\n{section}{text[end:]}"


def stale(docs_dir: Path = DOCS_DIR) -> list[str]:
    """Pages whose generated section differs from what their specs render (or is missing)."""
    out = []
    for page, section in generated().items():
        path = docs_dir / page
        try:
            current = extract(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            current = None
        if current != section:
            out.append(page)
    return out


def write(docs_dir: Path = DOCS_DIR) -> list[str]:
    """Rewrite every generated section that differs; the pages written."""
    written = []
    for page, section in generated().items():
        path = docs_dir / page
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        new = splice(text, section)
        if new != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new, encoding="utf-8")
            written.append(page)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.drivers.docs",
        description="the protocol pages' option tables, from the protocol specs",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a page differs")
    mode.add_argument("--write", action="store_true", help="rewrite the generated sections")
    parser.add_argument("--docs", type=Path, default=DOCS_DIR, help="the docs/ directory")
    args = parser.parse_args(argv)
    if args.write:
        for page in write(args.docs):
            print(f"wrote {args.docs / page}")
        return 0
    differ = stale(args.docs)
    for page in differ:
        print(f"{args.docs / page}: differs from its spec", file=sys.stderr)
    if differ:
        print("run: python -m gateway.drivers.docs --write", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
