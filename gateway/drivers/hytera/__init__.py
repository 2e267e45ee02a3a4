"""Hytera DMR radios (HRNP/HDAP over serial or the radio's USB network).

The spec only; the driver is not built yet.
"""
