"""Pause and resume as new configuration versions; a publish that fails changes nothing."""

from __future__ import annotations

import pytest

from tandem_console.actions import ActionError, InstanceActions
from tandem_shared.contracts import InstanceConfig
from tandem_shared.instances import StaticInstanceRegistry, demo_instance


class Topic:
    """Stands in for tandem.instances: what is put becomes what the registry reads back."""

    def __init__(self, registry: StaticInstanceRegistry, *, fail: bool = False) -> None:
        self.registry = registry
        self.fail = fail
        self.published: list[InstanceConfig] = []

    async def put(self, config: InstanceConfig) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.published.append(config)
        self.registry._by_id[config.id] = config


async def test_pause_then_resume_publish_new_versions() -> None:
    registry = StaticInstanceRegistry([demo_instance()])
    topic = Topic(registry)
    actions = InstanceActions(registry, topic.put, publish_timeout_s=1.0)

    paused = await actions.set_paused("demo", True)
    assert paused.changed and paused.instance.paused and paused.instance.version == 2
    again = await actions.set_paused("demo", True)
    assert not again.changed and len(topic.published) == 1

    resumed = await actions.set_paused("demo", False, discard_held=True)
    assert resumed.changed
    assert (resumed.instance.paused, resumed.instance.version, resumed.instance.discard_held_on_resume) == (
        False,
        3,
        True,
    )
    assert [c.version for c in topic.published] == [2, 3]


async def test_a_failed_publish_is_a_503_and_changes_nothing() -> None:
    registry = StaticInstanceRegistry([demo_instance()])
    actions = InstanceActions(registry, Topic(registry, fail=True).put, publish_timeout_s=1.0)
    with pytest.raises(ActionError) as raised:
        await actions.set_paused("demo", True)
    assert raised.value.status == 503
    assert "broker unreachable" in raised.value.message
    config = registry.get("demo")
    assert config is not None and (config.paused, config.version) == (False, 1)


async def test_an_unknown_instance_is_a_404() -> None:
    actions = InstanceActions(StaticInstanceRegistry([]), Topic(StaticInstanceRegistry([])).put, publish_timeout_s=1.0)
    with pytest.raises(ActionError) as raised:
        await actions.set_paused("nope", True)
    assert raised.value.status == 404
