"""GT06 GPS trackers (Concox and compatible): the spec and the ``listen://`` driver."""
