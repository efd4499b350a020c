"""Sync-state rules: what Tandem knows each side holds, as pure values and functions (no I/O)."""
