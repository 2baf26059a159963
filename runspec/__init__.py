"""The contract both halves share, torch-free: what a run is (config), what a run has
(its directory, lifecycle, events, metrics) and what it reads (data).

``engine/`` (everything that needs torch) and ``cockpit/`` (everything a person touches) are
siblings that both import this package and never each other: the cockpit starts the engine as
a subprocess. The layers are import-linter contracts in pyproject.toml.
"""
