"""JSON and RFC 3339 times from outside: every bad payload is one JsonInputError with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import FieldlinkError
from gateway.jsonin import (
    EARLIEST,
    LATEST,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NUMBER_CHARS,
    JsonInputError,
    loads,
    loads_object,
    parse_rfc3339,
)
from gateway.model import rfc3339

TASK = {"task_id": "t-1", "units": ["zhang-wei"], "text": "人民广场东侧有人摔倒", "n": [1, 2.5]}


def reason(payload: bytes, **limits: int) -> str:
    with pytest.raises(JsonInputError) as info:
        loads(payload, **limits)
    return str(info.value)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


def test_error_is_a_fieldlink_value_error() -> None:
    assert issubclass(JsonInputError, FieldlinkError)
    assert issubclass(JsonInputError, ValueError)
    assert EARLIEST.isoformat() == "2000-01-01T00:00:00+00:00"
    assert LATEST.isoformat() == "2100-01-01T00:00:00+00:00"


def test_ordinary_payload_parses() -> None:
    payload = json.dumps(TASK, ensure_ascii=False).encode()
    assert loads(payload) == TASK
    assert loads_object(payload) == TASK
    assert loads(b" \r\n\t1 ") == 1


# --- nesting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 5000,
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"[{" * 2500,
        b"[[]" * 5000,
        b'["\\\\", ' + b"[" * 5000,  # an escaped backslash does not escape the closing quote
        b'["\\\\\\"", ' + b"[" * 5000,
    ],
)
def test_deep_nesting_is_refused_without_recursing(payload: bytes) -> None:
    assert reason(payload) == f"JSON nested deeper than {MAX_DEPTH} levels"


def test_nesting_up_to_the_limit_passes() -> None:
    assert depth(loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)) == MAX_DEPTH
    half = MAX_DEPTH // 2
    mixed = b'{"a":' * half + b"[" * half + b"]" * half + b"}" * half
    assert depth(loads(mixed)) == MAX_DEPTH
    assert reason(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)).startswith("JSON nested")
    assert loads(b"[[1]]", max_depth=2) == [[1]]
    assert reason(b"[[[1]]]", max_depth=2) == "JSON nested deeper than 2 levels"
    assert loads(b"[[],[],{}]", max_depth=2) == [[], [], {}]


@pytest.mark.parametrize(
    "text",
    ["[[[[[[", "]]]]{{{{", '\\"[[[[', "\\\\", '\\\\\\"{{{', "[\\n[\\t[\\u005b["],
)
def test_brackets_and_escaped_quotes_inside_strings_do_not_count(text: str) -> None:
    payload = b'[["' + text.encode() * 50 + b'", "[["], {"[[": "{{"}]'
    assert loads(payload, max_depth=2) == json.loads(payload)


def test_brackets_after_an_unterminated_string_are_a_json_error() -> None:
    assert reason(b'["abc\\", ' + b"[" * 5000).startswith("malformed JSON: Unterminated string")


# --- numbers ------------------------------------------------------------------------------------


def test_long_numbers_are_refused_before_int_sees_them() -> None:
    too_long = f"number longer than {MAX_NUMBER_CHARS} characters"
    assert reason(b"1" * 5000) == too_long
    assert reason(b'{"lat": ' + b"9" * 5000 + b"}") == too_long
    assert reason(b"[0." + b"1" * 5000 + b"]") == too_long
    assert loads(b"9" * MAX_NUMBER_CHARS) == int("9" * MAX_NUMBER_CHARS)
    assert loads(b"-" + b"9" * (MAX_NUMBER_CHARS - 1)) == -int("9" * (MAX_NUMBER_CHARS - 1))
    assert reason(b"-" + b"9" * MAX_NUMBER_CHARS) == too_long
    assert reason(b"1" * (MAX_NUMBER_CHARS + 1)) == too_long
    assert reason(b"123456", max_number_chars=5) == "number longer than 5 characters"


@pytest.mark.parametrize("literal", [b"1e999", b"-1e999", b"[1.5e400]"])
def test_infinite_floats_are_refused(literal: bytes) -> None:
    assert reason(literal).startswith("number out of range: ")


def test_tiny_floats_underflow_to_zero() -> None:
    assert loads(b"1e-999") == 0.0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers_are_refused(literal: str) -> None:
    assert reason(f'{{"lat": {literal}}}'.encode()) == f"{literal} is not a JSON number"


# --- encoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-32-le"])
def test_other_encodings_are_refused(codec: str) -> None:
    payload = json.dumps(TASK, ensure_ascii=False).encode(codec)
    assert reason(payload).startswith("payload is not UTF-8")


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_other_encodings_with_a_bom_say_not_utf8(codec: str) -> None:
    assert reason(json.dumps(TASK).encode(codec)) == "payload is not UTF-8"


def test_utf8_bom_is_refused() -> None:
    payload = b"\xef\xbb\xbf" + json.dumps(TASK).encode()
    assert reason(payload) == "payload starts with a byte order mark; send UTF-8 without one"


@pytest.mark.parametrize(
    "payload",
    [b'{"text": "\xff"}', b'"\xe4\xba"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b"\x80"],
)
def test_invalid_utf8_is_refused(payload: bytes) -> None:
    assert reason(payload) == "payload is not UTF-8"


def test_lone_surrogate_escapes_are_refused_and_pairs_pass() -> None:
    assert reason(b'{"text": "a\\ud800b"}') == "string holds an unpaired surrogate escape"
    assert reason(b'{"\\uDC00": 1}') == "string holds an unpaired surrogate escape"
    assert loads(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert loads(b'["\\\\ud800"]') == ["\\ud800"]  # an escaped backslash, then text


# --- size, keys and syntax ----------------------------------------------------------------------


def test_oversize_payload_is_refused() -> None:
    exact = b'"' + b"a" * (MAX_BYTES - 2) + b'"'
    assert loads(exact) == "a" * (MAX_BYTES - 2)
    assert reason(exact + b" ") == f"payload is {MAX_BYTES + 1} bytes, over {MAX_BYTES}"
    assert reason(b"[1, 2]", max_bytes=5) == "payload is 6 bytes, over 5"


def test_duplicate_keys_are_refused() -> None:
    assert reason(b'{"a": 1, "a": 2}') == "duplicate key 'a'"
    assert reason(b'{"x": [{"b": 1, "c": 2, "b": 1}]}') == "duplicate key 'b'"
    assert loads(b'[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


def test_empty_and_malformed_payloads() -> None:
    assert reason(b"") == "payload is empty"
    assert reason(b"   ").startswith("malformed JSON: Expecting value")
    assert reason(b'{"a": 1,}').startswith("malformed JSON: ")
    assert reason(b"[1, 2").startswith("malformed JSON: ")
    assert reason(b"{'a': 1}").startswith("malformed JSON: ")
    assert reason(b"\x00{}") == "payload is not UTF-8 (it holds NUL bytes)"
    long_key = b'{"' + b"k" * 10_000 + b'" 1}'
    assert len(reason(long_key)) <= 120


def test_loads_object_names_what_it_wanted() -> None:
    with pytest.raises(JsonInputError, match=r"^a request is a JSON object$"):
        loads_object(b"[1]")
    with pytest.raises(JsonInputError, match=r"^a task is a JSON object$"):
        loads_object(b'"task"', what="a task")
    with pytest.raises(JsonInputError, match=r"^payload is 8 bytes, over 4$"):
        loads_object(b'{"a": 1}', max_bytes=4)
    with pytest.raises(JsonInputError, match=r"^JSON nested deeper than 1 levels$"):
        loads_object(b'{"a": []}', max_depth=1)
    with pytest.raises(JsonInputError, match=r"^number longer than 2 characters$"):
        loads_object(b'{"a": 100}', max_number_chars=2)


# --- fuzzing ------------------------------------------------------------------------------------

JSON_TOKENS = st.sampled_from(
    [b"[", b"]", b"{", b"}", b'"', b"\\", b'\\"', b"\\\\", b":", b",", b" ", b"1", b"-", b"e",
     b".5", b"9" * 50, b"NaN", b"Infinity", b"true", b"null", b'"a"', b'"a":', b"\\u", b"d800",
     b"\xff", b"\x00", b"\xef\xbb\xbf", "张".encode()]
)  # fmt: skip


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_json_input_error(payload: bytes) -> None:
    try:
        loads(payload)
    except JsonInputError as exc:
        message = str(exc)
    else:
        return
    assert 0 < len(message) <= 120


@settings(deadline=None, max_examples=1000)
@given(st.lists(JSON_TOKENS, max_size=80).map(b"".join), st.integers(0, 4))
def test_json_like_bytes_agree_with_json_or_are_refused(payload: bytes, max_depth: int) -> None:
    try:
        value = loads(payload, max_depth=max_depth)
    except JsonInputError as exc:
        message = str(exc)
        assert "RecursionError" not in message  # the depth pre-scan, not json, said no
        return
    assert value == json.loads(payload)
    assert depth(value) <= max_depth


JSON_TEXT = st.text(
    st.sampled_from('[]{}"\\/ \n\t\u2028a张') | st.characters(codec="utf-8"), max_size=12
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=40,
)


@settings(deadline=None, max_examples=500)
@given(JSON_VALUES, st.integers(0, 6), st.booleans(), st.sampled_from([None, 1]))
def test_valid_json_round_trips_and_depth_is_exact(
    value: object, max_depth: int, ensure_ascii: bool, indent: int | None
) -> None:
    payload = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    if depth(value) > max_depth:
        assert reason(payload, max_depth=max_depth) == (
            f"JSON nested deeper than {max_depth} levels"
        )
    else:
        assert loads(payload, max_depth=max_depth) == value


# --- RFC 3339 times -----------------------------------------------------------------------------


def time_error(text: object, key: str = "created_at") -> str:
    with pytest.raises(JsonInputError) as info:
        parse_rfc3339(text, key)
    assert info.value.key == key
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T08:00:00Z", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01t08:00:00z", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01 08:00:00Z", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T16:00:00+08:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T22:00:00+14:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-04-30T20:00:00-12:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T08:00:00-00:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("2024-05-01T08:00:00.1Z", datetime(2024, 5, 1, 8, 0, 0, 100_000, tzinfo=UTC)),
        ("2024-05-01T08:00:00.123Z", datetime(2024, 5, 1, 8, 0, 0, 123_000, tzinfo=UTC)),
        ("2024-05-01T08:00:00.1234569999Z", datetime(2024, 5, 1, 8, 0, 0, 123_456, tzinfo=UTC)),
        ("2024-02-29T23:59:59.999999+23:59", datetime(2024, 2, 29, 0, 0, 59, 999_999, tzinfo=UTC)),
        ("2000-01-01T08:00:00+08:00", EARLIEST),
        ("2100-01-01T00:00:00Z", LATEST),
    ],
)
def test_good_times_parse_to_utc(text: str, expected: datetime) -> None:
    moment = parse_rfc3339(text, "created_at")
    assert moment == expected
    assert moment.tzinfo is UTC


@pytest.mark.parametrize("value", [None, 1714550400, 1.5, b"2024-05-01T08:00:00Z", ["x"]])
def test_a_time_must_be_a_string(value: object) -> None:
    assert time_error(value) == "created_at must be an RFC 3339 time string"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-05-01",
        "2024-05-01T08:00Z",
        "2024-5-1T08:00:00Z",
        "2024-05-01T08:00:00.Z",
        "2024-05-01T08:00:00+0800",
        "2024-05-01T08:00:00+08",
        "2024-05-01T08:00:00 Z",
        "2024-05-01T08:00:00Z ",
        "+2024-05-01T08:00:00Z",
        "2024-05-01T08:00:00UTC",
        "２０２４-05-01T08:00:00Z",  # noqa: RUF001 - full-width digits are the point
        "\u0662\u0660\u0662\u0664-05-01T08:00:00Z",  # Arabic-Indic digits, which int() accepts
    ],
)
def test_wrong_shapes_are_refused(text: str) -> None:
    assert time_error(text) == f"created_at is not an RFC 3339 time: {text!r}"


def test_the_quoted_value_is_truncated() -> None:
    text = "x" * 1000
    assert time_error(text, "expires_at") == f"expires_at is not an RFC 3339 time: {'x' * 40!r}"


@pytest.mark.parametrize("text", ["2024-05-01T08:00:00", "2024-05-01T08:00:00.5"])
def test_a_time_needs_a_zone(text: str) -> None:
    assert time_error(text) == "created_at needs a time zone (Z or +08:00)"


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-30T08:00:00Z",
        "2023-02-29T08:00:00Z",
        "2024-13-01T08:00:00Z",
        "2024-00-01T08:00:00Z",
        "2024-05-00T08:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T08:60:00Z",
        "2024-12-31T23:59:60Z",  # leap seconds are not accepted
    ],
)
def test_impossible_values_are_refused(text: str) -> None:
    assert time_error(text).startswith(f"created_at is not a valid time: {text!r} (")


@pytest.mark.parametrize("text", ["2024-05-01T08:00:00+24:00", "2024-05-01T08:00:00-08:60"])
def test_impossible_offsets_are_refused(text: str) -> None:
    assert time_error(text) == f"created_at has an impossible offset: {text!r}"


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+14:00",  # astimezone(UTC) would raise OverflowError
        "9999-12-31T23:59:59-12:00",
        "9999-12-31T23:59:59Z",  # parses, but adding a day later would overflow
        "0000-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T07:59:59+08:00",
        "2100-01-01T00:00:00.000001Z",
        "2099-12-31T23:00:01-01:00",
    ],
)
def test_times_outside_the_range_are_refused(text: str) -> None:
    assert time_error(text) == "created_at is outside 2000-01-01..2100-01-01"


def test_custom_range() -> None:
    now = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    window = {"earliest": now - timedelta(days=1), "latest": now + timedelta(minutes=5)}
    assert parse_rfc3339("2024-05-01T08:34:00Z", "t", **window) == now + timedelta(minutes=4)
    with pytest.raises(JsonInputError, match=r"^t is outside 2024-04-30T08:30:00\+00:00\.\."):
        parse_rfc3339("2024-05-01T08:36:00Z", "t", **window)


@settings(deadline=None, max_examples=500)
@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_json_input_error(text: str) -> None:
    try:
        moment = parse_rfc3339(text, "k")
    except JsonInputError as exc:
        message = str(exc)
    else:
        assert EARLIEST <= moment <= LATEST
        return
    assert message.startswith("k ")


NEAR_TIMES = st.from_regex(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,12})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?",
    fullmatch=True,
)


@settings(deadline=None, max_examples=1000)
@given(NEAR_TIMES)
def test_well_shaped_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        moment = parse_rfc3339(text, "k")
    except JsonInputError:
        return
    assert EARLIEST <= moment <= LATEST
    assert moment + timedelta(days=36_500) > moment  # later arithmetic cannot overflow
    assert moment - timedelta(days=36_500) < moment


@settings(deadline=None, max_examples=500)
@given(
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
    st.one_of(st.none(), st.from_regex(r"[0-9]{1,12}", fullmatch=True)),
    st.sampled_from("Tt "),
)
def test_good_times_round_trip(
    local: datetime, offset_min: int, fraction: str | None, separator: str
) -> None:
    sign = "-" if offset_min < 0 else "+"
    hours, minutes = divmod(abs(offset_min), 60)
    text = (
        f"{local:%Y-%m-%d}{separator}{local:%H:%M:%S}"
        + (f".{fraction}" if fraction is not None else "")
        + f"{sign}{hours:02d}:{minutes:02d}"
    )
    micros = int(fraction[:6].ljust(6, "0")) if fraction is not None else 0
    zone = timezone(timedelta(minutes=offset_min))
    expected = local.replace(microsecond=micros, tzinfo=zone).astimezone(UTC)

    moment = parse_rfc3339(text, "created_at")

    assert moment == expected
    assert moment.tzinfo is UTC
    assert parse_rfc3339(rfc3339(moment), "created_at") == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000
    )
