"""Lua scripts sent by name (EVALSHA) on pipelines, or several calls as one (`ScriptBatch`) in transactions.

A script called through a pipeline is sent as EVALSHA: its text is not repeated with every call. After a Redis
restart the name is unknown (NOSCRIPT) until the script is loaded again; each caller says how it recovers
(the auto-pipelined callers reload and call again; a `ScriptBatch` is sent whole, as EVAL, and needs no reload).
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


@dataclass(frozen=True)
class BatchedScripts:
    """Scripts that can also be called together: one script holding each as a function of its own KEYS and ARGV,
    which runs a list of their calls in order. Each call of a transaction costs the client the parsing of a reply
    (QUEUED, then the result): one call for a hundred costs it one."""

    scripts: tuple[LuaScript, ...]

    @cached_property
    def script(self) -> LuaScript:
        # ARGV: per call, the script's number (1-based), its number of keys and of arguments, then the arguments;
        # KEYS: every call's keys in turn.
        functions = "\n".join(
            f"calls[{n}] = function(KEYS, ARGV)\n{script.text}\nend" for n, script in enumerate(self.scripts, 1)
        )
        return LuaScript(
            "local calls = {}\n"
            f"{functions}\n"
            """local k, a = 0, 1
while a <= #ARGV do
  local script, nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local keys, args = {}, {}
  for i = 1, nk do keys[i] = KEYS[k + i] end
  for i = 1, na do args[i] = ARGV[a + 2 + i] end
  calls[script](keys, args)
  k, a = k + nk, a + 3 + na
end
return 0
"""
        )

    @cached_property
    def numbers(self) -> dict[str, int]:
        return {script.sha: n for n, script in enumerate(self.scripts, 1)}


class ScriptBatch:
    """Calls of `BatchedScripts` collected (a `ScriptCall`), then queued on a pipeline as one EVAL per Redis
    Cluster hash tag of their keys: the calls of one tag run in the order they came, as one script."""

    def __init__(self, scripts: BatchedScripts) -> None:
        self._scripts = scripts
        self._by_tag: dict[str, tuple[list[str], list[str | int]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __call__(self, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]) -> None:
        tag = hash_tag(keys[0]) if keys else ""
        batch_keys, batch_args = self._by_tag.setdefault(tag, ([], []))
        batch_keys.extend(keys)
        batch_args.extend((self._scripts.numbers[script.sha], len(keys), len(args)))
        batch_args.extend(args)
        self._count += 1

    def queue(self, pipe: Pipeline) -> None:
        text = self._scripts.script.text
        for keys, args in self._by_tag.values():
            pipe.eval(text, len(keys), *keys, *args)

    def clear(self) -> None:
        self._by_tag.clear()
        self._count = 0


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster places it by: what is between the first `{` and the next `}`, when that is
    not empty; otherwise the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key
