"""The lock files cover what they install: every requirement of requirements-dev.txt and of each package that
`make install` or the Dockerfile installs is pinned in its lock at a version its specifier allows.

`make install` and the image install the project's packages with --no-deps, so a dependency added to a
pyproject.toml without `make lock` would otherwise be missing at run time (pip check catches part of it, late)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from support.deploy import code
from support.deploy.manifests import DOCKERFILE

REPO = Path(__file__).resolve().parents[3]
MAKEFILE_PACKAGES = re.compile(r"^PACKAGES := (.+)$", re.MULTILINE)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)


def pins(lock_text: str) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(lock_text)}


def requirements_file(text: str) -> list[Requirement]:
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            found.append(Requirement(line))
    return found


def package_requirements(package_dir: Path) -> tuple[str, list[Requirement]]:
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    return project["name"], [Requirement(r) for r in project.get("dependencies", [])]


def lock_problems(lock_text: str, requirements: Iterable[Requirement], own: set[str]) -> list[str]:
    """What the lock lacks: requirements (for this platform's markers) unpinned or pinned outside their range."""
    pinned = pins(lock_text)
    problems = []
    for req in requirements:
        name = canonicalize_name(req.name)
        if name in own or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        if name not in pinned:
            problems.append(f"{req.name} is not in the lock")
        elif not req.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{req.name}=={pinned[name]} does not satisfy {req}")
    return problems


def makefile_packages() -> list[Path]:
    match = MAKEFILE_PACKAGES.search((REPO / "Makefile").read_text())
    assert match, "PACKAGES not found in the Makefile"
    return [REPO / p for p in match.group(1).split()]


def covered(packages: Iterable[Path], extra: Iterable[Requirement] = ()) -> tuple[list[Requirement], set[str]]:
    requirements, own = list(extra), set()
    for package in packages:
        name, deps = package_requirements(package)
        own.add(canonicalize_name(name))
        requirements += deps
    return requirements, own


def test_the_development_lock_covers_requirements_dev_and_every_package() -> None:
    dev = requirements_file((REPO / "requirements-dev.txt").read_text())
    requirements, own = covered(makefile_packages(), dev)
    assert lock_problems((REPO / "requirements.lock").read_text(), requirements, own) == []


def test_the_image_lock_covers_every_package_the_dockerfile_installs() -> None:
    installed = set().union(*(stage.packages for stage in code.parse_dockerfile(DOCKERFILE).stages.values()))
    assert installed, "no package installs found in the Dockerfile"
    requirements, own = covered(REPO / p for p in sorted(installed))
    assert lock_problems((REPO / "requirements-image.lock").read_text(), requirements, own) == []


def test_the_image_lock_holds_the_development_locks_versions() -> None:
    dev, image = pins((REPO / "requirements.lock").read_text()), pins((REPO / "requirements-image.lock").read_text())
    assert {n: v for n, v in image.items() if dev.get(n) != v} == {}


def test_a_missing_or_outdated_pin_is_reported() -> None:
    lock = "httpx==0.27.0 \\\n    --hash=sha256:00\nanyio==4.0.0 \\\n    --hash=sha256:00\n"
    requirements = [Requirement("httpx>=0.28"), Requirement("orjson>=3"), Requirement("anyio")]
    requirements += [Requirement("uvloop; sys_platform == 'win32'"), Requirement("tandem-shared")]
    assert lock_problems(lock, requirements, {"tandem-shared"}) == [
        "httpx==0.27.0 does not satisfy httpx>=0.28",
        "orjson is not in the lock",
    ]


def test_requirement_lines_are_read_without_options_and_comments() -> None:
    text = "# tools\n-r other.txt\npytest>=8  # runner\n\nruff\n"
    assert [str(r) for r in requirements_file(text)] == ["pytest>=8", "ruff"]


def test_an_unparsable_requirement_is_an_error() -> None:
    with pytest.raises(InvalidRequirement):
        requirements_file("not a requirement ===\n")
