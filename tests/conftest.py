"""Shared fixtures: where the recorded vectors live, and the guard against leaked tasks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devkit.broker import BrokerUnavailable, Mosquitto
from gateway.drivers import registry
from gateway.drivers.spec import ALL_TRANSPORTS, ProtocolSpec, options
from gateway.options import OptionSpec, positive

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FIELDLINK_SHARED", ROOT.parent / "shared"))
VECTORS = SHARED / "vectors"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``vectors`` run wherever the shared vectors exist, and only there."""
    if VECTORS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"recorded vectors not found at {VECTORS}")
    for item in items:
        if "vectors" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def vectors_dir() -> Path:
    return VECTORS


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free loopback port, private to the test; fails in CI if missing."""
    try:
        broker = Mosquitto(tmp_path / "broker")
    except BrokerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"{exc}: CI must install it (scripts/install-peers)")
        pytest.skip(str(exc))
    with broker:
        yield broker


def _future_address(address: str) -> str:
    if not address.isascii() or not address.isdigit() or not 1 <= len(address) <= 8:
        raise ValueError(f"{address!r} is not a future radio id (1 to 8 digits)")
    return address.lstrip("0") or "0"


FUTURE = ProtocolSpec(
    name="futureproto",
    title="A protocol the registry knows but no driver serves (tests only)",
    options=options(offline_after_s=OptionSpec("float", 600.0, positive)),
    address=_future_address,
    address_example="0042",
    offline_after_s=600.0,
    transports=ALL_TRANSPORTS,
    driver=None,
    docs="protocols/futureproto.md",
)


@pytest.fixture
def unbuilt_protocol() -> Iterator[ProtocolSpec]:
    """A protocol registered without a driver, for the duration of the test: how the gateway
    treats a protocol that is known (its spec shipped) but not built yet."""
    registry._SPECS[FUTURE.name] = FUTURE  # noqa: SLF001 - the one way in, for tests
    try:
        yield FUTURE
    finally:
        del registry._SPECS[FUTURE.name]  # noqa: SLF001
