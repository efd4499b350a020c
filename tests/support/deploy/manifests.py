"""What the deployment files say: containers (command, image, environment, mounts) from Kubernetes manifests
and docker-compose.yml, in one shape so the same checks apply to both."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tandem_devstack.paths import REPO_ROOT

K8S = REPO_ROOT / "k8s"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

# Kubernetes images by name → the Dockerfile target they are built from (see Dockerfile, k8s overlays' images).
IMAGE_TARGETS = {"tandem": "runtime", "tandem-dev": "dev"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")

Doc = dict[str, Any]


@dataclass(frozen=True)
class Container:
    origin: str  # where it is declared, for messages
    name: str  # the container's (Kubernetes) or service's (compose) name
    image: str  # image name without registry and tag
    target: str | None  # Dockerfile target of a Tandem image, None for others (Kafka, Redis)
    argv: tuple[str, ...]
    env: Mapping[str, str | None]  # name → literal value (None: from a field or secret reference)
    mounts: Mapping[str, str] = field(default_factory=dict)  # path → "emptyDir" | "secret:<name>" | …
    grace_s: float | None = None  # how long a stopping container gets before SIGKILL
    prestop_s: float = 0.0  # time spent in a preStop sleep before SIGTERM

    @property
    def module(self) -> str | None:
        """The top-level Python package it runs: `uvicorn pkg.app:create_app`, `python -m pkg`, `tandem`."""
        argv = list(self.argv)
        if argv and argv[0] == "uvicorn":
            app = next((a for a in argv[1:] if not a.startswith("-")), "")
            return app.split(":")[0].split(".")[0] or None
        if "-m" in argv[:-1]:
            return argv[argv.index("-m") + 1].split(".")[0]
        if argv and argv[0] == "tandem":
            return "tandem_cli"
        return None

    @property
    def app(self) -> str | None:
        """`pkg.app:create_app` for a uvicorn command."""
        if self.argv and self.argv[0] == "uvicorn":
            return next((a for a in self.argv[1:] if not a.startswith("-")), None)
        return None

    def option(self, name: str) -> str | None:
        argv = list(self.argv)
        return argv[argv.index(name) + 1] if name in argv[:-1] else None


# ------------------------------------------------------------------------------------------------- Kubernetes


def kubectl() -> str:
    """The kubectl installed into .venv by requirements-dev.txt (a known kustomize), else one on PATH."""
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: run `make install` (requirements-dev.txt installs it)")
    return found


def overlays() -> list[Path]:
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def kustomize_build(directory: Path) -> list[Doc]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], check=False, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(docs: Sequence[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: Sequence[Doc], kind: str, name: str) -> Doc | None:
    return next((d for d in of_kind(docs, kind) if d["metadata"]["name"] == name), None)


def image_name(image: str) -> str:
    """registry.example.com/tandem/tandem:0.1.0 → tandem."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def _pod_env(docs: Sequence[Doc], container: Doc) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        found = named(docs, kind, ref["name"])
        if found is None:
            raise AssertionError(f"envFrom names a {kind} that is not in the manifests: {source}")
        # A Secret's values are not the checks' business; only which variables it sets.
        env.update({k: (v if kind == "ConfigMap" else None) for k, v in found.get("data", {}).items()})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def _volume_kind(volume: Doc) -> str:
    for kind in ("secret", "configMap"):
        if kind in volume:
            return f"{kind}:{volume[kind].get('secretName') or volume[kind].get('name')}"
    return next(iter(k for k in volume if k != "name"), "unknown")


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def k8s_containers(docs: Sequence[Doc], origin: str) -> Iterator[tuple[Doc, Container]]:
    """(workload, container) for every container of every Deployment, StatefulSet and Job."""
    for workload in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        spec = pod_spec(workload)
        volumes = {v["name"]: _volume_kind(v) for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            image = image_name(c["image"])
            prestop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
            yield (
                workload,
                Container(
                    origin=f"{origin} {workload['kind']}/{workload['metadata']['name']}",
                    name=c["name"],
                    image=image,
                    target=IMAGE_TARGETS.get(image),
                    argv=tuple(c.get("command", [])) + tuple(c.get("args", [])),
                    env=_pod_env(docs, c),
                    mounts={m["mountPath"]: volumes.get(m["name"], "missing") for m in c.get("volumeMounts", [])},
                    grace_s=float(spec.get("terminationGracePeriodSeconds", 30)),
                    prestop_s=float(prestop[1]) if prestop[:1] == ["sleep"] else 0.0,
                ),
            )


# ------------------------------------------------------------------------------------------------ compose


def load_compose(path: Path = COMPOSE_FILE) -> Doc:
    return yaml.safe_load(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _duration_s(value: str | None) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(value))
    if not match:
        raise AssertionError(f"unsupported duration {value!r}")
    return int(match.group(1) or 0) * 60.0 + int(match.group(2) or 0)


def compose_containers(doc: Doc, origin: str = "docker-compose.yml") -> list[Container]:
    containers = []
    for name, service in doc["services"].items():
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
        mounts = {}
        for volume in service.get("volumes", []):
            source, _, target = volume.partition(":")
            mounts[target.split(":")[0]] = f"volume:{source}"
        for path in service.get("tmpfs", []):
            mounts[path] = "tmpfs"
        target = (service.get("build") or {}).get("target")
        containers.append(
            Container(
                origin=f"{origin} service {name}",
                name=name,
                image=image_name(service.get("image", name)),
                target=target,
                argv=tuple(service.get("command", [])),
                env={k: None if v is None else str(v) for k, v in environment.items()},
                mounts=mounts,
                grace_s=_duration_s(service.get("stop_grace_period")),
            )
        )
    return containers
