"""The rooms of docs/architecture.md and what each may import, read from the code's own import statements."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("tandem_ingest", "tandem_mapper", "tandem_writer", "tandem_console")
IO_LIBRARIES = ("aiokafka", "faststream", "redis", "httpx")

# Modules that take values and return values: unit-tested without any server.
PURE = (
    "shared/src/tandem_shared/contracts",
    "shared/src/tandem_shared/sync",
    "shared/src/tandem_shared/privacy.py",
    "shared/src/tandem_shared/vendors/mailchimp/bodies.py",
    "shared/src/tandem_shared/vendors/accessplanit/bodies.py",
    "shared/src/tandem_shared/vendors/accessplanit/classify.py",
    "shared/src/tandem_shared/instance_validation/rules.py",
    "shared/src/tandem_shared/instance_validation/compatibility.py",
    "shared/src/tandem_shared/reconcile/domain.py",
    "services/ingest/src/tandem_ingest/domain",
    "services/mapper/src/tandem_mapper/domain",
    "services/writer/src/tandem_writer/domain",
)

# Calls that open a connection to the outside, and the one module allowed to make each.
CONSTRUCTORS = {
    "AIOKafkaProducer": "shared/src/tandem_shared/kafka/connection.py",
    "AIOKafkaConsumer": "shared/src/tandem_shared/kafka/connection.py",
    "AIOKafkaAdminClient": "shared/src/tandem_shared/kafka/connection.py",
    "KafkaBroker": "shared/src/tandem_shared/kafka/connection.py",
    "BlockingConnectionPool": "shared/src/tandem_shared/redis/client.py",
}
PRODUCTION = ("shared/src", "services", "cli/src", "devstack/src")


def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        path = ROOT / root
        if path.is_file():
            yield path
        else:
            yield from (p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_services_never_import_each_other_the_cli_or_the_devstack() -> None:
    offences = []
    for service in SERVICES:
        package = ROOT / "services" / service.removeprefix("tandem_") / "src" / service
        for path in python_files(rel(package)):
            others = {top(m) for m in imported_modules(path)} & {*SERVICES, "tandem_cli", "tandem_devstack"}
            offences.extend(f"{rel(path)} imports {name}" for name in others - {service})
    assert offences == []


@pytest.mark.parametrize(
    ("room", "allowed"),
    [
        ("shared/src", {"tandem_shared"}),
        ("cli/src", {"tandem_shared", "tandem_cli"}),
        ("simulators", {"mailchimp_sim", "accessplanit_sim"}),
    ],
)
def test_a_room_imports_only_its_own_and_what_lies_below(room: str, allowed: set[str]) -> None:
    ours = {
        *SERVICES,
        "tandem_shared",
        "tandem_cli",
        "tandem_devstack",
        "tandem_bench",
        "mailchimp_sim",
        "accessplanit_sim",
    }
    offences = []
    for path in python_files(room):
        for module in imported_modules(path):
            if top(module) in ours and top(module) not in allowed:
                offences.append(f"{rel(path)} imports {module}")
    assert offences == []


def test_pure_modules_do_no_io() -> None:
    offences = []
    for path in python_files(*(p for p in PURE if (ROOT / p).exists())):
        for module in imported_modules(path):
            if top(module) in IO_LIBRARIES:
                offences.append(f"{rel(path)} imports {module}")
    assert offences == []


def test_connections_are_opened_in_one_place_each() -> None:
    offences = []
    for path in python_files(*PRODUCTION):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "Redis":
                name = "Redis." + func.attr  # Redis.from_url, Redis.from_pool
            home = CONSTRUCTORS.get(name) or (
                "shared/src/tandem_shared/redis/client.py" if name.startswith("Redis.") else None
            )
            if home is not None and rel(path) != home:
                offences.append(f"{rel(path)}:{node.lineno} calls {name} (only {home} may)")
    assert offences == []


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The readers above find what they look for (so an empty list means something)."""
    sample = tmp_path / "sample.py"
    sample.write_text("import redis\nfrom tandem_writer.app import create_app\nfrom . import sibling\n")
    assert imported_modules(sample) == {"redis", "tandem_writer.app"}
