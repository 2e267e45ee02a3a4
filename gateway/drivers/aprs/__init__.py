"""Analog radios through a KISS TNC: APRS positions, messages and Mic-E emergencies.

:mod:`.spec` says what the protocol is to configuration and dispatch; :mod:`.driver` is the
driver, loaded only when an ``aprs`` link runs. The codecs are in ``protocols/kiss.py``,
``protocols/ax25.py`` and ``protocols/aprs/``.
"""
