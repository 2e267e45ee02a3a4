"""Reading a person's reply, and distances on the ground: pure functions for dispatch."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from gateway.config import DispatchConfig

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), for haversine distances of a few kilometres."""

_REF_RE = re.compile(r"#\s*(\d{1,6})")


@dataclass(frozen=True, slots=True)
class Reading:
    """What a reply says: the stage it reports (or None) and the task ref it names."""

    stage: str | None
    ref: int | None


def _normalise(text: str) -> str:
    """Lower case, without white space or punctuation (ASCII or CJK)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in "PZSC")


class ReplyReader:
    """Classifies replies with the configured vocabularies (Chinese and English).

    The longest vocabulary word that begins the reply decides, so ``收到马上出发``
    is an acceptance and ``到达现场`` is an arrival. A ``#12`` anywhere in the reply
    names the task it answers.
    """

    def __init__(self, cfg: DispatchConfig) -> None:
        words: list[tuple[str, str]] = []
        for stage, vocabulary in (
            ("acknowledged", cfg.accept),
            ("declined", cfg.decline),
            ("contacted", cfg.contacted),
            ("on_scene", cfg.on_scene),
            ("closed", cfg.closed),
        ):
            words.extend((_normalise(word), stage) for word in vocabulary)
        self._words = sorted((w for w in words if w[0]), key=lambda w: -len(w[0]))

    def read(self, text: str) -> Reading:
        ref_match = _REF_RE.search(text)
        ref = int(ref_match.group(1)) if ref_match else None
        rest = _REF_RE.sub(" ", text)
        body = _normalise(rest)
        for word, stage in self._words:
            if body.startswith(word):
                # A bare digit is a keypad answer only when it stands alone ("1", not "10").
                if word.isdigit() and body != word:
                    continue
                return Reading(stage, ref)
        return Reading(None, ref)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
