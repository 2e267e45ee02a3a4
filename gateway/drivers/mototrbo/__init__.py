"""MOTOTRBO DMR radios through a control station (ARS, TMS, LRRP over UDP)."""
