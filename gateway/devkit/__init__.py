"""What tests, benchmarks and ``fieldlink demo`` use, and the daemon never does.

:mod:`.broker` starts a real mosquitto on a free loopback port (or an embedded broker that
installs with pip, for the demo where mosquitto is absent); :mod:`.demo` is ``fieldlink
demo``; :mod:`.asyncapi` reads the AsyncAPI document of the MQTT interface
(``gateway/asyncapi.json``, installed with the package) to validate payloads against it.
``fieldlink run`` imports none of this.
"""
