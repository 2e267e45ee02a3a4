"""Hytera DMR data: HRNP framing, HDAP envelopes and the TMP, LP, RRS, RCP and DDS services.

Pure and sans-IO. Facts and byte layouts come from ``../shared/notes/hytera.md`` (each with
its public source); no code is taken from the projects that note cites. Every error these
modules raise is a :class:`HyteraError`.
"""

from __future__ import annotations

from protocols.hytera.errors import HyteraError

__all__ = ["HyteraError"]
