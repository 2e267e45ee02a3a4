"""JT/T 808 vehicle terminals, trackers and PoC radios (2013 and 2019).

The spec only; the driver is not built yet.
"""
