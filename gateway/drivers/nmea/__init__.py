"""GPS receivers speaking NMEA 0183: every valid fix becomes a position of the link's unit.

:mod:`.spec` says what the protocol is to configuration and dispatch; :mod:`.driver` is the
driver, loaded only when an ``nmea`` link runs. The codec is ``protocols/nmea/``.
"""
