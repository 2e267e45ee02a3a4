"""Every protocol's spec drives check-config, and its docs page cannot disagree with it.

For every protocol in the registry, built or not: what ``fieldlink check-config`` says about
an unknown key, a value of the wrong type, a server-only key on a client URL, and which
defaults it shows; that a protocol without a driver is refused with :func:`not_built_message`;
that the spec itself holds together (address rule, offline time, docs page, driver class);
and that the generated sections of ``docs/protocols/`` are what the specs render.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cli import main
from gateway.config import ID_RE, REQUIRED, OptionSpec, SerialSettings, render_toml
from gateway.config.tables import LINK_OPTIONS, SERIAL_OPTIONS
from gateway.drivers import docs
from gateway.drivers.base import Driver
from gateway.drivers.registry import PROTOCOLS, built, not_built_message
from gateway.drivers.spec import ALL_TRANSPORTS, SERVER_TRANSPORTS, ProtocolSpec, options
from tests.conftest import ROOT

DOCS = ROOT / "docs"
BUILT = [name for name, spec in PROTOCOLS.items() if spec.built]

MINIMAL: dict[str, dict[str, object]] = {
    "aprs": {"callsign": "BH4ABC-10"},
    "nmea": {},
    "hytera": {},
    "mototrbo": {},
    "jt808": {},
    "gt06": {},
}
"""The keys a link of each built protocol must have beside name, protocol and url."""

EXPECTED_TYPE = {
    "int": "expected an integer",
    "float": "expected a number",
    "bool": "expected a boolean",
    "str": "expected a string",
    "str_list": "expected an array of strings",
    "float_list": "expected an array of numbers",
}
WRONG_VALUE: dict[str, tuple[object, str]] = {
    "int": ("5", "got string"),
    "float": ("5", "got string"),
    "bool": ("yes", "got string"),
    "str": (5, "got integer"),
    "str_list": ("x", "got string"),
    "float_list": (["1", 2], "got string"),  # the item: links[0].<key>[0]
}


def url(transport: str) -> str:
    return "/dev/ttyUSB0" if transport == "serial" else f"{transport}://127.0.0.1:7000"


def toml_value(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def preferred_transport(spec: ProtocolSpec, option: OptionSpec | None = None) -> str:
    """A transport of ``spec`` on which ``option`` applies (a client one where possible); any of
    its transports when the option applies to none of them."""
    usable = spec.transports
    if option is not None and option.transports is not None:
        usable = usable & option.transports or usable
    order = ["tcp", "serial", "udp", "listen", "udp-listen"]
    return min(usable, key=lambda t: order.index(t) if t in order else len(order))


def config(tmp_path: Path, protocol: str, transport: str, **keys: object) -> dict[str, object]:
    link: dict[str, object] = {"name": "t", "protocol": protocol, "url": url(transport)}
    link.update(MINIMAL.get(protocol, {}))
    link.update(keys)
    return {"gateway": {"id": "gw", "data_dir": str(tmp_path / "data")}, "links": [link]}


def check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cfg: dict[str, object]
) -> tuple[int, str, str]:
    path = tmp_path / "config.toml"
    path.write_text(render_toml(cfg), encoding="utf-8")
    code = main(["check-config", "-c", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    return code, out, err


def refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cfg: dict[str, object]
) -> tuple[str, str]:
    """check-config's refusal: (key, reason)."""
    code, out, err = check_config(tmp_path, capsys, cfg)
    assert code == 2, (out, err)
    assert out == ""
    prefix = "fieldlink: configuration error: "
    assert err.startswith(prefix), err
    key, _, reason = err.removeprefix(prefix).strip().partition(": ")
    return key, reason


def option_cases(protocols: list[str]) -> list[tuple[str, str]]:
    return [(name, key) for name in protocols for key in PROTOCOLS[name].options]


def typo(key: str) -> str:
    """Two letters in the middle swapped, as a hurried hand would."""
    i = len(key) // 2
    return key[:i] + key[i + 1] + key[i] + key[i + 2 :]


def test_every_built_protocol_has_a_minimal_link_here() -> None:
    assert set(MINIMAL) == set(BUILT) == set(built())


# --- check-config, driven by each spec ---------------------------------------------------------


@pytest.mark.parametrize(("protocol", "key"), option_cases(list(PROTOCOLS)))
def test_a_misspelt_option_is_an_unknown_key_with_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str, key: str
) -> None:
    """Built or not: a key no link takes is reported first, so a typo names the typo."""
    spec = PROTOCOLS[protocol]
    option = spec.options[key]
    value = toml_value(option.default) if option.default not in (REQUIRED, None) else "x"
    cfg = config(tmp_path, protocol, preferred_transport(spec, option), **{typo(key): value})
    assert refused(tmp_path, capsys, cfg) == (
        f"links[0].{typo(key)}",
        f"unknown key (did you mean {key}?)",
    )


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_a_key_close_to_nothing_is_an_unknown_key_without_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str
) -> None:
    spec = PROTOCOLS[protocol]
    cfg = config(tmp_path, protocol, preferred_transport(spec), frobnicate=True)
    assert refused(tmp_path, capsys, cfg) == ("links[0].frobnicate", "unknown key")


@pytest.mark.parametrize(("protocol", "key"), option_cases(BUILT))
def test_a_wrong_type_names_the_key_and_the_type_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str, key: str
) -> None:
    spec = PROTOCOLS[protocol]
    option = spec.options[key]
    value, got = WRONG_VALUE[option.kind]
    cfg = config(tmp_path, protocol, preferred_transport(spec, option), **{key: value})
    where, reason = refused(tmp_path, capsys, cfg)
    assert where == (f"links[0].{key}[0]" if option.kind == "float_list" else f"links[0].{key}")
    item_type = {"float_list": "expected a number"}.get(option.kind, EXPECTED_TYPE[option.kind])
    assert reason.startswith(item_type), reason
    assert reason.endswith(got)
    if option.kind == "float_list":  # the list itself must be a list
        cfg = config(tmp_path, protocol, preferred_transport(spec, option), **{key: "x"})
        assert refused(tmp_path, capsys, cfg) == (
            f"links[0].{key}",
            f"{EXPECTED_TYPE['float_list']}, got string",
        )


def _default_cases() -> list[tuple[str, str]]:
    return [(name, t) for name in BUILT for t in sorted(PROTOCOLS[name].transports)]


@pytest.mark.parametrize(("protocol", "transport"), _default_cases())
def test_check_config_shows_every_option_with_its_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str, transport: str
) -> None:
    spec = PROTOCOLS[protocol]
    code, out, err = check_config(tmp_path, capsys, config(tmp_path, protocol, transport))
    assert code == 0, err
    link = json.loads(out)["links"][0]
    applicable = {
        key: option
        for key, option in spec.options.items()
        if option.transports is None or transport in option.transports
    }
    expected_keys = set(LINK_OPTIONS) | set(applicable)
    if transport == "serial":
        expected_keys |= set(SERIAL_OPTIONS)
        assert set(SERIAL_OPTIONS) == {f.name for f in dataclasses.fields(SerialSettings)}
    assert set(link) == expected_keys
    for key, option in applicable.items():
        if option.default is REQUIRED:
            assert link[key] == MINIMAL[protocol][key]
        elif option.default is None:
            assert link[key]  # derived while parsing (an nmea link's unit: the link's name)
        else:
            assert link[key] == toml_value(option.default), key
    server_only = {k for k, o in spec.options.items() if o.transports == SERVER_TRANSPORTS}
    if transport in SERVER_TRANSPORTS:
        assert server_only <= set(link)
    else:
        assert not server_only & set(link)


def _server_only_cases() -> list[tuple[str, str, str]]:
    return [
        (name, key, transport)
        for name in BUILT
        for key, option in PROTOCOLS[name].options.items()
        if option.transports is not None
        for transport in sorted(PROTOCOLS[name].transports - option.transports)
    ]


@pytest.mark.parametrize(("protocol", "key", "transport"), _server_only_cases())
def test_a_server_option_is_refused_on_a_client_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: str, key: str, transport: str
) -> None:
    option = PROTOCOLS[protocol].options[key]
    assert option.transports is not None
    value = toml_value(option.default)
    where, reason = refused(tmp_path, capsys, config(tmp_path, protocol, transport, **{key: value}))
    assert where == f"links[0].{key}"
    kinds = " or ".join(f"{t}://" for t in sorted(option.transports))
    assert reason == f"{key} only applies to {kinds} links"
    # The same value is taken on a URL it applies to.
    on_server = config(tmp_path, protocol, min(option.transports), **{key: value})
    code, out, err = check_config(tmp_path, capsys, on_server)
    assert code == 0, err
    assert json.loads(out)["links"][0][key] == value


def test_every_built_protocol_with_client_and_server_urls_has_a_server_only_option() -> None:
    """So the test above has cases for each that can be both (the dial-in keys of every server
    link); a protocol that only ever listens (trackers dial in) has no client URL to refuse
    them on. Others may have options of some URLs too (Hytera's UDP service ports)."""
    both = {
        n
        for n in BUILT
        if PROTOCOLS[n].transports - SERVER_TRANSPORTS
        and PROTOCOLS[n].transports & SERVER_TRANSPORTS
    }
    assert both <= {case[0] for case in _server_only_cases()}


@pytest.mark.parametrize("transport", ["serial", "tcp", "udp", "listen", "udp-listen"])
def test_a_protocol_not_built_yet_is_refused_by_check_config(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    unbuilt_protocol: ProtocolSpec,
    transport: str,
) -> None:
    protocol = unbuilt_protocol.name
    cfg = config(tmp_path, protocol, transport)
    assert refused(tmp_path, capsys, cfg) == ("links[0].protocol", not_built_message(protocol))
    # Its own options, even of the wrong type, do not change what is said: the protocol is the
    # problem, not its keys.
    spec = PROTOCOLS[protocol]
    every_default = {k: toml_value(o.default) for k, o in spec.options.items()}
    wrong_types = {k: WRONG_VALUE[o.kind][0] for k, o in spec.options.items()}
    for keys in (every_default, wrong_types):
        cfg = config(tmp_path, protocol, transport, **keys)
        assert refused(tmp_path, capsys, cfg) == ("links[0].protocol", not_built_message(protocol))


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_every_protocol_shows_its_defaults_on_its_page(protocol: str) -> None:
    """check-config cannot show those of a protocol not built (it refuses the link); the
    operators' page shows them for every protocol."""
    spec = PROTOCOLS[protocol]
    page = (DOCS / spec.docs).read_text(encoding="utf-8")
    for key, option in spec.options.items():
        row = f"| `{key}` | {docs.KIND_NAMES[option.kind]} | {docs.render_default(option)} |"
        assert row in page, row


def test_not_built_message_names_what_is_built(unbuilt_protocol: ProtocolSpec) -> None:
    message = not_built_message(unbuilt_protocol.name)
    assert message.startswith(f"{unbuilt_protocol.name} links are not supported")
    assert all(b in message for b in BUILT)
    assert unbuilt_protocol.name not in built()


# --- each spec holds together ------------------------------------------------------------------


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_spec_is_registered_under_its_name(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    assert spec.name == protocol
    assert ID_RE.match(protocol)
    assert spec.title
    assert spec.transports
    assert spec.transports <= ALL_TRANSPORTS


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_address_rule_takes_its_example_and_is_idempotent(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    if spec.address is None:
        assert spec.address_example == ""
        return
    assert spec.address_example
    normalised = spec.address(spec.address_example)
    assert spec.address(normalised) == normalised
    with pytest.raises(ValueError, match=r"\S"):
        spec.address("")


_RULES = sorted(name for name, spec in PROTOCOLS.items() if spec.address is not None)


@given(
    protocol=st.sampled_from(_RULES),
    address=st.text(alphabet="0123456789abcXYZ- ", max_size=22)
    | st.sampled_from([PROTOCOLS[name].address_example for name in _RULES]),
)
def test_address_rules_are_idempotent_on_anything_they_accept(protocol: str, address: str) -> None:
    rule = PROTOCOLS[protocol].address
    assert rule is not None
    try:
        normalised = rule(address)
    except ValueError:
        return
    assert rule(normalised) == normalised


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_spec_names_an_existing_docs_page(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    assert spec.docs.startswith("protocols/")
    assert (DOCS / spec.docs).is_file(), f"docs/{spec.docs}"


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_driver_class_loads_a_driver_for_built_protocols_only(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    if spec.built:
        cls = spec.driver_class()
        assert isinstance(cls, type)
        assert issubclass(cls, Driver)
    else:
        with pytest.raises(LookupError, match=protocol):
            spec.driver_class()


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_offline_default_is_the_specs_offline_time(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    assert spec.offline_after_s > 0
    if "offline_after_s" in spec.options:
        assert spec.options["offline_after_s"].default == spec.offline_after_s


@pytest.mark.parametrize(("protocol", "key"), option_cases(list(PROTOCOLS)))
def test_option_default_has_its_type_and_passes_its_own_check(protocol: str, key: str) -> None:
    option = PROTOCOLS[protocol].options[key]
    default = option.default
    if default is REQUIRED or default is None:
        return
    scalar = {"int": int, "float": float, "bool": bool, "str": str}
    if option.kind in scalar:
        assert type(default) is scalar[option.kind], (key, default)
    else:
        assert isinstance(default, tuple)
        item = str if option.kind == "str_list" else float
        assert all(type(v) is item for v in default), (key, default)
    if option.validate is not None:
        assert option.validate(default, f"links[0].{key}") == default


@pytest.mark.parametrize(("protocol", "key"), option_cases(list(PROTOCOLS)))
def test_every_option_applies_to_some_url_of_its_protocol(protocol: str, key: str) -> None:
    spec = PROTOCOLS[protocol]
    option = spec.options[key]
    assert option.transports is None or option.transports & spec.transports


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_options_do_not_shadow_the_common_link_keys(protocol: str) -> None:
    assert not set(PROTOCOLS[protocol].options) & (set(LINK_OPTIONS) | set(SERIAL_OPTIONS))


def test_a_key_means_the_same_on_every_protocol() -> None:
    """One type and one set of URLs per key, so one description and one error hint fit all."""
    seen: dict[str, tuple[str, frozenset[str] | None, str]] = {}
    for name, spec in PROTOCOLS.items():
        for key, option in spec.options.items():
            first = seen.setdefault(key, (option.kind, option.transports, name))
            assert (option.kind, option.transports) == first[:2], (key, name, first[2])


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_capabilities_hold_together(protocol: str) -> None:
    caps = PROTOCOLS[protocol].capabilities
    assert (caps.max_text_chars > 0) == caps.text
    if caps.voice or caps.native_answers:
        assert caps.text


# --- the docs cannot disagree ------------------------------------------------------------------


@pytest.mark.parametrize("page", list(docs.generated()))
def test_docs_page_section_is_what_the_spec_renders(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert docs.extract(text) == docs.generated()[page], (
        f"docs/{page} differs from its spec: run python -m gateway.drivers.docs --write"
    )


def test_docs_check_passes_on_the_repository() -> None:
    assert docs.stale(DOCS) == []
    result = subprocess.run(
        [sys.executable, "-m", "gateway.drivers.docs", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_option_and_capability_has_a_description() -> None:
    for spec in PROTOCOLS.values():
        for key, option in spec.options.items():
            assert docs.describe(key, option)
        for field in dataclasses.fields(spec.capabilities):
            assert docs.capability_descriptions().get(field.name), field.name
    with pytest.raises(LookupError, match="doc="):
        docs.describe("frobnicate")
    assert docs.describe("frobnicate", OptionSpec("int", 1, doc="Frobs.")) == "Frobs."


def test_a_spec_change_makes_its_page_stale() -> None:
    aprs = PROTOCOLS["aprs"]
    changed = dataclasses.replace(
        aprs, options=options(**{**aprs.options, "kiss_port": OptionSpec("int", 1)})
    )
    page = (DOCS / aprs.docs).read_text(encoding="utf-8")
    assert docs.extract(page) == docs.render_section(aprs)
    assert docs.extract(page) != docs.render_section(changed)
    assert "| `kiss_port` | integer | `1` |" in docs.render_options(changed)


def test_check_and_write_keep_the_prose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(DOCS / "protocols", tmp_path / "protocols")
    aprs = tmp_path / "protocols" / "aprs.md"
    original = aprs.read_text(encoding="utf-8")
    aprs.write_text(
        original.replace("| `kiss_port` | integer | `0` |", "| `kiss_port` | integer | `1` |")
    )
    gt06 = tmp_path / "protocols" / "gt06.md"
    prose = "# GT06\n\nProse only, no section yet.\n"
    gt06.write_text(prose, encoding="utf-8")

    assert docs.main(["--check", "--docs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "protocols/aprs.md: differs" in err
    assert "protocols/gt06.md: differs" in err
    assert "protocols/nmea.md" not in err

    assert docs.main(["--write", "--docs", str(tmp_path)]) == 0
    assert aprs.read_text(encoding="utf-8") == original
    written = gt06.read_text(encoding="utf-8")
    assert written.startswith(prose.rstrip() + "\n\n## Link options\n\n" + docs.BEGIN + "\n")
    assert docs.extract(written) == docs.render_section(PROTOCOLS["gt06"])
    assert docs.main(["--check", "--docs", str(tmp_path)]) == 0


@pytest.mark.parametrize(
    "text",
    [
        f"{docs.BEGIN}\n{docs.BEGIN}\n{docs.END}\n",
        f"{docs.END}\n{docs.BEGIN}\n",
        f"{docs.BEGIN}\n",
    ],
)
def test_malformed_markers_are_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="options:"):
        docs.extract(text)
    with pytest.raises(ValueError, match="options:"):
        docs.splice(text, "x\n")


def test_index_lists_every_protocol_with_its_page() -> None:
    index = (DOCS / docs.INDEX).read_text(encoding="utf-8")
    for spec in PROTOCOLS.values():
        page = Path(spec.docs).name
        status = "built" if spec.built else "not built yet"
        assert f"| `{spec.name}` | {spec.title} | {status} |" in index
        assert f"[{page}]({page})" in index
