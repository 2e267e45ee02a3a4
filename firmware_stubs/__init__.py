"""The device side of each protocol, built from the project's own codecs, for tests and the demo."""
