"""Several script calls sent as one script per Redis Cluster hash tag (`ScriptBatch`)."""

from __future__ import annotations

from typing import Any

from tandem_shared.redis.scripts import BatchedScripts, LuaScript, ScriptBatch, hash_tag

FIRST = LuaScript("return redis.call('SET', KEYS[1], ARGV[1])")
SECOND = LuaScript("return redis.call('DEL', KEYS[1], KEYS[2])")
BATCHED = BatchedScripts((FIRST, SECOND))


class RecordingPipeline:
    def __init__(self) -> None:
        self.evals: list[tuple[Any, ...]] = []

    def eval(self, *args: Any) -> None:
        self.evals.append(args)


def test_the_hash_tag_is_between_the_first_braces_unless_they_are_empty() -> None:
    assert hash_tag("tandem:{inst-1}:state:mailchimp:abc") == "inst-1"
    assert hash_tag("{tandem|i|mailchimp|c}:lock") == "tandem|i|mailchimp|c"
    assert hash_tag("tandem:{}:x{y}") == "tandem:{}:x{y}"
    assert hash_tag("plain") == "plain"


def test_the_calls_of_one_tag_go_as_one_script_in_the_order_they_came() -> None:
    calls = ScriptBatch(BATCHED)
    calls(FIRST, ["a:{one}:x"], ["v1"])
    calls(SECOND, ["a:{two}:x", "a:{two}:y"], [])
    calls(SECOND, ["a:{one}:y", "a:{one}:z"], [])
    assert len(calls) == 3
    pipe = RecordingPipeline()
    calls.queue(pipe)  # type: ignore[arg-type]
    text = BATCHED.script.text
    assert pipe.evals == [
        (text, 3, "a:{one}:x", "a:{one}:y", "a:{one}:z", 1, 1, 1, "v1", 2, 2, 0),
        (text, 2, "a:{two}:x", "a:{two}:y", 2, 2, 0),
    ]
    calls.clear()
    assert len(calls) == 0
    pipe = RecordingPipeline()
    calls.queue(pipe)  # type: ignore[arg-type]
    assert pipe.evals == []


def test_the_batch_script_holds_each_script_as_a_function_of_its_own_keys_and_arguments() -> None:
    text = BATCHED.script.text
    assert f"calls[1] = function(KEYS, ARGV)\n{FIRST.text}\nend" in text
    assert f"calls[2] = function(KEYS, ARGV)\n{SECOND.text}\nend" in text
    assert BATCHED.numbers == {FIRST.sha: 1, SECOND.sha: 2}
