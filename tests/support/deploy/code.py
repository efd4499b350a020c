"""What the code says: packages, their settings and env names, the data flow over TOPICS, the image's stages.

Everything here is discovered from the sources, so a new service, setting or topic is checked without
editing a list. A package being built in parallel (referenced by the deployment files, no sources in this
checkout yet) is reported as pending instead of failing.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from dockerfile_parse import DockerfileParser
from faststream.kafka import KafkaBroker
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from tandem_devstack.paths import REPO_ROOT
from tandem_devstack.stack import Ports, stack_env
from tandem_shared.contracts.topics import (
    CHANGES,
    COMMANDS,
    COMMANDS_DLQ,
    ERASURE,
    INSTANCES,
    RECONCILE_REQUESTS,
    RECONCILE_RUNS,
    TRACE,
    TopicSpec,
)

# ---------------------------------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class Package:
    dir: str  # relative to the repository root, e.g. "services/ingest"
    module: str  # its top-level import package, e.g. "tandem_ingest"
    env_prefix: str  # the prefix its settings use by convention, e.g. "TANDEM_INGEST_"
    present: bool  # False while its sources are not in this checkout (being built in parallel)


def package_for_module(module: str, repo: Path = REPO_ROOT) -> Package | None:
    """The repository convention: tandem_<name> is services/<name>, <name>_sim is simulators/<name>."""
    fixed = {"tandem_shared": "shared", "tandem_cli": "cli", "tandem_devstack": "devstack", "tandem_bench": "bench"}
    if module in fixed:
        directory, prefix = fixed[module], "TANDEM_"
    elif module.startswith("tandem_"):
        name = module.removeprefix("tandem_")
        directory, prefix = f"services/{name}", f"TANDEM_{name.upper()}_"
    elif module.endswith("_sim"):
        name = module.removesuffix("_sim")
        directory, prefix = f"simulators/{name}", f"{name.upper()}_SIM_"
    else:
        return None
    return Package(directory, module, prefix, present=(repo / directory / "src" / module).is_dir())


def present_packages(repo: Path = REPO_ROOT) -> list[Package]:
    """Every package with sources in this checkout (a directory with src/<module>/__init__.py)."""
    found = []
    for init in sorted(repo.glob("*/src/*/__init__.py")) + sorted(repo.glob("*/*/src/*/__init__.py")):
        package = package_for_module(init.parent.name, repo)
        if package is not None and package.present:
            found.append(package)
    return found


_APP_FACTORY = re.compile(r"^def create_app\(", re.MULTILINE)


def service_apps(repo: Path = REPO_ROOT) -> list[str]:
    """Every process a service package can be run as: `module:create_app` for each top-level module of a service
    defining the factory uvicorn serves (a package may have several roles: the writer and its reconciler)."""
    return [
        f"{package.module}.{path.stem}:create_app"
        for package in present_packages(repo)
        if package.dir.startswith("services/")
        for path in sorted((repo / package.dir / "src" / package.module).glob("*.py"))
        if _APP_FACTORY.search(path.read_text(encoding="utf-8"))
    ]


def convention_problems(repo: Path = REPO_ROOT) -> list[str]:
    """A package that breaks the naming convention would escape every check keyed on it."""
    problems = []
    for init in sorted(repo.glob("*/src/*/__init__.py")) + sorted(repo.glob("*/*/src/*/__init__.py")):
        module, directory = init.parent.name, init.parent.parent.parent.relative_to(repo).as_posix()
        package = package_for_module(module, repo)
        if package is None or package.dir != directory:
            problems.append(f"{directory}/src/{module}: does not follow the package naming convention (code.py)")
    return problems


# ---------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    owner: str  # the settings class, for messages
    field: str
    env_names: tuple[str, ...]  # upper case; any one of them sets the field
    default: Any
    required: bool


def env_names(cls: type[BaseSettings], name: str) -> tuple[str, ...]:
    """The environment variables pydantic-settings reads for one field (aliases replace the prefix)."""
    info = cls.model_fields[name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice.upper() for choice in alias.choices if isinstance(choice, str))
    if isinstance(alias, str):
        return (alias.upper(),)
    if info.alias:
        return (info.alias.upper(),)
    return (f"{cls.model_config.get('env_prefix', '')}{name}".upper(),)


_SETTINGS_CLASS = re.compile(r"^class \w+\([^)]*Settings[^)]*\):", re.MULTILINE)


def settings_classes(package: Package, repo: Path = REPO_ROOT) -> list[type[BaseSettings]]:
    """The pydantic-settings classes defined in a package's sources."""
    classes: list[type[BaseSettings]] = []
    src = repo / package.dir / "src"
    for path in sorted((src / package.module).rglob("*.py")):
        if not _SETTINGS_CLASS.search(path.read_text(encoding="utf-8")):
            continue
        module = importlib.import_module(".".join(path.relative_to(src).with_suffix("").parts))
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseSettings) and obj.__module__ == module.__name__:
                classes.append(obj)
    return classes


def settings_of(cls: type[BaseSettings]) -> list[Setting]:
    return [
        Setting(cls.__name__, name, env_names(cls, name), info.default, info.is_required())
        for name, info in cls.model_fields.items()
    ]


def package_settings(package: Package, repo: Path = REPO_ROOT) -> list[Setting]:
    return [s for cls in settings_classes(package, repo) for s in settings_of(cls)]


def secret_resolvers(repo: Path = REPO_ROOT) -> set[str]:
    """Services whose code resolves secret references (env:/file:) and so needs the vendor keys mounted.

    The shared library, the operator's `tandem` command and the benchmark are not deployed services: the
    operator's own environment provides what they resolve.
    """
    return {
        package.module
        for package in present_packages(repo)
        if package.module not in ("tandem_shared", "tandem_cli", "tandem_bench")
        and any("resolve_secret(" in p.read_text(encoding="utf-8") for p in (repo / package.dir).rglob("*.py"))
    }


def make_run_env_names() -> set[str]:
    """The variables `make run` sets for every process (stack_env without the inherited environment)."""
    with mock.patch.dict(os.environ, clear=True):
        return set(stack_env(kafka="k:1", redis="redis://r:1/0", ports=Ports(), data_dir=Path("/d")))


def broker_graceful_timeout_s() -> float:
    """FastStream's graceful_timeout: how long a stopping consumer waits for the message in hand."""
    return float(inspect.signature(KafkaBroker.__init__).parameters["graceful_timeout"].default)


# -------------------------------------------------------------------------------------------------- data flow


@dataclass(frozen=True)
class Access:
    """What one service does with Kafka; the KafkaUser of the same name must allow exactly this much."""

    user: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group: str | None = None
    # Read by a consumer the service is not scaled on (the writer's reconciliation requests, a few a day).
    unscaled_reads: tuple[str, ...] = ()

    @property
    def all_reads(self) -> tuple[str, ...]:
        return (*self.reads, *self.unscaled_reads)


def data_flow(topics: Sequence[TopicSpec], groups: Mapping[str, str]) -> list[Access]:
    """Who reads and writes which topic. Retry tiers are the topics named after tandem.commands
    (other than the DLQ), so a tier added to TOPICS is expected in the writer's ACLs at once."""
    retries = tuple(t.name for t in topics if t.name.startswith(COMMANDS + ".") and t.name != COMMANDS_DLQ)
    return [
        # Erasure requests are read whole (no group), like tandem.instances, by every service that acknowledges them;
        # the applied offset is kept in Redis.
        Access("tandem-ingest", reads=(INSTANCES, ERASURE), writes=(CHANGES, TRACE)),
        Access(
            "tandem-mapper", reads=(CHANGES, INSTANCES, ERASURE), writes=(COMMANDS, TRACE), group=groups.get("mapper")
        ),
        Access(
            "tandem-writer",
            reads=(COMMANDS, *retries, INSTANCES),
            # Reconciliation runs publish repairs as changes and report on their runs; schedules request runs.
            writes=(*retries, COMMANDS_DLQ, TRACE, CHANGES, RECONCILE_RUNS, RECONCILE_REQUESTS),
            group=groups.get("writer"),
            unscaled_reads=(RECONCILE_REQUESTS, ERASURE),
        ),
        # Replays republish a change event and trace it; pause and resume put instance configurations; "forget"
        # publishes an erasure request, which the console applies to its own store too; the reconcile button
        # requests a run and the instance page follows its progress.
        Access(
            "tandem-console",
            reads=(TRACE, INSTANCES, ERASURE, RECONCILE_RUNS),
            writes=(CHANGES, TRACE, INSTANCES, ERASURE, RECONCILE_REQUESTS),
            group=groups.get("console"),
        ),
        # People, `tandem replay`, `tandem reconcile` and instance registration: read anything, republish dead
        # letters to the command path, put instance configurations, request reconciliation runs.
        Access(
            "tandem-operator",
            reads=tuple(t.name for t in topics),
            writes=(COMMANDS, *retries, INSTANCES, ERASURE, RECONCILE_REQUESTS),
            group="tandem-operator",
        ),
    ]


# ------------------------------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str
    packages: set[str] = field(default_factory=set)  # package dirs pip-installed into /opt/tandem
    created_dirs: set[str] = field(default_factory=set)  # `install -d` directories
    user: str | None = None


@dataclass(frozen=True)
class Dockerfile:
    stages: dict[str, Stage]

    def uid(self, target: str) -> int | None:
        user = self.stages[target].user
        return int(user.split(":")[0]) if user and user.split(":")[0].isdigit() else None


def parse_dockerfile(path: Path) -> Dockerfile:
    """Stages with what each has installed, following FROM <stage> and COPY --from=<stage> /opt/tandem."""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for item in DockerfileParser(str(path)).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            image, _, name = value.partition(" AS ")
            current = Stage(name.strip() or image.strip())
            parent = stages.get(image.strip())
            if parent is not None:
                current.packages |= parent.packages
                current.created_dirs |= parent.created_dirs
                current.user = parent.user
            stages[current.name] = current
        elif current is None:
            continue
        elif instruction == "RUN":
            words = shlex.split(value)
            if "pip" in " ".join(words) and "install" in words:
                current.packages |= {w.removeprefix("./").rstrip("/") for w in words if w.startswith("./")}
            for command in " ".join(words).split("&&"):
                parts = command.split()
                if parts[:2] == ["install", "-d"]:
                    current.created_dirs |= {p for p in parts if p.startswith("/")}
        elif instruction == "COPY" and "--from=" in value:
            source = re.search(r"--from=(\S+)", value)
            if source and source.group(1) in stages and "/opt/tandem" in value:
                current.packages |= stages[source.group(1)].packages
        elif instruction == "USER":
            current.user = value.strip()
    return Dockerfile(stages)
