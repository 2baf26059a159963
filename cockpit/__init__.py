"""The cockpit: everything a person touches. Never imports torch."""

__version__ = "0.1.0"
