"""Ingest's part of erasing a contact: it holds nothing named by the contact, and acknowledges so.

Its claims on published events are named by the keyed hash of the event id (`redis.keys.ingest_claim_key`): no
address, nothing that links one to a contact without the deployment's key and the whole delivery; they expire with
`TANDEM_INGEST_DEDUPE_DONE_TTL_S`. Users waiting for the catch-up read are kept by accessplanit user id until that
read: removing one would lose the change it waits for (the read re-syncs the user, which erasure does not stop).
"""

from __future__ import annotations

from tandem_shared.contracts import ErasureRequest
from tandem_shared.redis.erasure import RedisErasureOffsets

KEPT = (
    "event claims named by keyed hashes of event ids (no address; expire with the dedupe TTL); users awaiting the "
    "catch-up read, by accessplanit user id, until that read"
)


class IngestEraser(RedisErasureOffsets):
    async def erase(self, request: ErasureRequest) -> dict[str, int]:
        return {}
