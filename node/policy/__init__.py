"""Sharing policies: format, engine, store and admin operations (see policies/README.md)."""
