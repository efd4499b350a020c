"""docker-compose.hostnet.yml against docker-compose.yml, offline: every service on the host's network, bound to
loopback only, no address left that names a compose service (there is no service DNS on the host's network), and
its ports taken from the variables scripts/compose_test.py sets (so `make image-test` runs it on free ports).
`make image-test` then brings the two up for real."""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.deploy.manifests import REPO_ROOT, load_compose

OVERRIDE = REPO_ROOT / "docker-compose.hostnet.yml"
Doc = dict[str, Any]


class _Reset:
    """Compose's `!reset` tag (Compose 2.24+, podman-compose 1.1+): the base file's value is dropped."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!reset", lambda loader, node: _Reset())
# Compose's `!override` tag: the value replaces the base file's instead of being merged with it.
_Loader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))


def load_override(path: Path = OVERRIDE) -> Doc:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # type: ignore[no-any-return]  # a SafeLoader with one tag more


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def problems(base: Doc, override: Doc) -> list[str]:
    found = []
    names = set(base["services"])
    if set(override["services"]) != names:
        found.append(f"services differ: {sorted(set(override['services']) ^ names)}")
    # A host in a URL or host:port that is a compose service's name only resolves on compose's own network.
    service_host = re.compile(rf"(?:^|//|@|,)({'|'.join(map(re.escape, names))}):\d+")
    for name, service in base["services"].items():
        mine = override["services"].get(name, {})
        if mine.get("network_mode") != "host":
            found.append(f"{name}: not on the host's network")
        if service.get("ports") and not isinstance(mine.get("ports"), _Reset):
            found.append(f"{name}: its published ports are not dropped (ports: !reset [])")
        merged = {**(service.get("environment") or {}), **(mine.get("environment") or {})}
        for key, value in merged.items():
            if service_host.search(str(value)):
                found.append(f"{name}: {key}={value} names a compose service")
            elif "0.0.0.0" in str(value) or "://:" in str(value):
                found.append(f"{name}: {key}={value} is not a loopback address")
        others = _strings({key: value for key, value in mine.items() if key != "environment"})
        found += [f"{name}: {s!r} is not a loopback address" for s in others if "0.0.0.0" in s or "://:" in s]
        command = mine.get("command", service.get("command")) or []
        for flag in ("--host", "--bind"):
            if flag in command and command[command.index(flag) + 1] != "127.0.0.1":
                found.append(f"{name}: {flag} {command[command.index(flag) + 1]}, not 127.0.0.1")
    return found


def test_hostnet_override_runs_every_service_on_loopback_of_the_host_network() -> None:
    assert problems(load_compose(), load_override()) == []


def test_hostnet_override_takes_its_ports_from_the_variables_the_compose_test_sets() -> None:
    spec = importlib.util.spec_from_file_location("compose_test", REPO_ROOT / "scripts" / "compose_test.py")
    assert spec is not None and spec.loader is not None
    compose_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compose_test)
    variables = set(re.findall(r"\$\{(\w+)", OVERRIDE.read_text(encoding="utf-8")))
    assert variables == set(compose_test.PORT_VARIABLES)


def test_the_override_check_can_fail() -> None:
    base, override = load_compose(), load_override()
    broken = copy.deepcopy(override)
    broken["services"]["mapper"]["command"][4] = "0.0.0.0"
    del broken["services"]["writer"]["network_mode"]
    del broken["services"]["ingest"]["environment"]
    assert problems(base, broken) == [
        "ingest: KAFKA_BOOTSTRAP_SERVERS=kafka:19092 names a compose service",
        "ingest: REDIS_URL=redis://redis:6379/0 names a compose service",
        "ingest: TANDEM_INGEST_HOST=0.0.0.0 is not a loopback address",
        "ingest: MAILCHIMP_SIM_HOST=0.0.0.0 is not a loopback address",
        "ingest: ACCESSPLANIT_SIM_HOST=0.0.0.0 is not a loopback address",
        "ingest: TANDEM_DEMO_MAILCHIMP_URL=http://mailchimp-sim:8101/3.0 names a compose service",
        "ingest: TANDEM_DEMO_ACCESSPLANIT_URL=http://accessplanit-sim:8102 names a compose service",
        "ingest: TANDEM_DEMO_INGEST_URL=http://ingest:8000 names a compose service",
        "mapper: '0.0.0.0' is not a loopback address",
        "mapper: --host 0.0.0.0, not 127.0.0.1",
        "writer: not on the host's network",
    ]
