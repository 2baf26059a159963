"""A run as files: its directory and state (lifecycle), events, metric names, process identity, stop flag."""
