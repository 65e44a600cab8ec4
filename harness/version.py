"""The harness version, importable without the package API."""

__version__ = "0.1.0"
