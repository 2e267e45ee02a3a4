"""GT06 GPS trackers (Concox and compatible).

The spec only; the driver is not built yet.
"""
