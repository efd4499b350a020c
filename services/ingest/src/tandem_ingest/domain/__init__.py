"""Ingest's pure rules: vendor payloads to ChangeEvents, signature checks, the catch-up poller's cursor maths.

Nothing here does I/O; the webhook routes, the poller service and their adapters call it.
"""
