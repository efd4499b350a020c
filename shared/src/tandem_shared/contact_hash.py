"""The one keyed hash of a contact's email address: what Redis key names and Kafka record keys carry instead of it.

HMAC-SHA256 of the lower-cased address under a key that only Tandem holds. Unlike Mailchimp's subscriber hash (MD5
of the address, which anyone can compute from a list of addresses), a key name or record key says nothing about
the address without the key. The key is a secret reference (`env:NAME` or `file:/path`, see `tandem_shared.secrets`)
in `TANDEM_CONTACT_HASH_KEY_REF`, by default `env:TANDEM_CONTACT_HASH_KEY`: every process of one deployment must
resolve the same key (changing it is an upgrade: see docs/security.md). `make run` generates one per data
directory; the test suite sets one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from functools import cache, lru_cache

from tandem_shared.secrets import SecretUnavailable, resolve_secret

KEY_REF_ENV = "TANDEM_CONTACT_HASH_KEY_REF"
DEFAULT_KEY_REF = "env:TANDEM_CONTACT_HASH_KEY"
MIN_KEY_LENGTH = 16


@cache
def configured_key() -> bytes:
    """The deployment's key, resolved once per process; refuses a missing or short one."""
    ref = os.environ.get(KEY_REF_ENV) or DEFAULT_KEY_REF
    key = resolve_secret(ref)
    if len(key) < MIN_KEY_LENGTH:
        raise SecretUnavailable(f"the contact hash key ({KEY_REF_ENV}) must be at least {MIN_KEY_LENGTH} characters")
    return key.encode("utf-8")


def contact_hash(email: str, *, key: bytes | None = None) -> str:
    """32 hex characters (128 bits) of HMAC-SHA256 over the trimmed, lower-cased address."""
    return _cached_hash(email, key if key is not None else configured_key())


@lru_cache(maxsize=4096)
def _cached_hash(email: str, key: bytes) -> str:
    """One change names its contact's keys several times (seven hashes of one address for a backfill change in the
    mapper, about a tenth of its own work on it): each address is hashed once while it is among the last 4,096
    hashed. The addresses stay in this process's memory no longer than that."""
    return keyed_hash(email.strip().lower(), key=key)


def keyed_hash(value: str, *, key: bytes | None = None) -> str:
    """HMAC-SHA256 of `value` as it is, under the same key: for a key name derived from data that holds an address
    (ingest's event ids are plain SHA-256 digests over the delivery, address included, so anyone holding the
    delivery's fields could confirm a guess from the digest; without the key nobody can)."""
    mac = hmac.new(key if key is not None else configured_key(), value.encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()[:32]
