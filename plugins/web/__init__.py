"""Operator web console and REST API (being built)."""

__version__ = "0.1.0"
