"""MOTOTRBO DMR radios through a control station (ARS, TMS, LRRP over UDP).

The spec only; the driver is not built yet.
"""
