"""Shared fixtures: where the recorded vectors live, and the guard against leaked tasks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devkit.broker import BrokerUnavailable, Mosquitto

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
