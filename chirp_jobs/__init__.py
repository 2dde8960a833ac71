"""Declarative call-job runner for the Chirp calling API."""

__version__ = "0.1.0"
