"""Front panel: status screens and a key menu on the serial LCD (placeholder until built)."""

__version__ = "0.1.0"
