"""Lua scripts sent by name (EVALSHA) on pipelines and transactions.

A script called through a pipeline is sent as EVALSHA: its text is not repeated with every call. After a Redis
restart the name is unknown (NOSCRIPT) until the script is loaded again; each caller says how it recovers
(`StateTransaction` loads its scripts inside the transaction, the auto-pipelined callers reload and call again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from redis.asyncio.client import Pipeline


@dataclass(frozen=True)
class LuaScript:
    text: str

    @cached_property
    def sha(self) -> str:
        """What Redis names the script by (SHA-1 of its text)."""
        return hashlib.sha1(self.text.encode("utf-8")).hexdigest()

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[str | int]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)


# Queues one script call (script, keys, arguments) wherever the caller is collecting commands.
ScriptCall = Callable[[LuaScript, Sequence[str], Sequence[str | int]], None]
