"""HTTP clients of the tests that talk to the simulators and services over a long test."""

from __future__ import annotations

import httpx

# uvicorn closes a connection idle for 5 s (its keep-alive timeout). A client that reuses one at that moment gets
# "Server disconnected without sending a response": tests that wait for quiescence between requests drop idle
# connections sooner than the servers do.
IDLE_BELOW_SERVERS = httpx.Limits(keepalive_expiry=2.0)
