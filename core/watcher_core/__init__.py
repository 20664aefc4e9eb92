"""Shared by every JCode Watcher component: the wire format (wire), the identity rules (identity), the CLI."""

__version__ = "0.1.0"
