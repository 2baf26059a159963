"""A run's configuration: the schema and its checks, the kinds' specs, stages and starting points."""
