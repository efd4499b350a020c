"""Custom resources against the operators' own CRD schemas (vendored in crds/, see crds/README.md).

Each served version's openAPIV3Schema becomes a strict JSON Schema, the way kubeconform's openapi2jsonschema
does it: an object that lists its properties takes no others (unless the CRD lets it keep unknown fields, as
Strimzi's topic `config` does), int-or-string and nullable become JSON Schema types. Validation is jsonschema's,
the library check-jsonschema runs on. Not evaluated: CEL rules (x-kubernetes-validations) and `metadata`, which
the API server checks itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from support.deploy.manifests import Doc

CRD_DIR = Path(__file__).parent / "crds"

Schema = dict[str, Any]


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items() if not key.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in schema:
        # The property names themselves, not schemas: copied as they are, each value made strict.
        out["properties"] = {name: _strict(value) for name, value in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


@cache
def schemas() -> Mapping[tuple[str, str], Schema]:
    """(apiVersion, kind) → strict JSON Schema, for every served version of every vendored CRD."""
    found: dict[tuple[str, str], Schema] = {}
    for path in sorted(CRD_DIR.glob("*/*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    found[(f"{group}/{version['name']}", kind)] = _strict(version["schema"]["openAPIV3Schema"])
    return found


def kinds() -> set[str]:
    return {kind for _, kind in schemas()}


def check(docs: Iterable[Doc]) -> list[str]:
    """Problems of the custom resources among docs; kinds without a vendored CRD are not looked at."""
    known, problems = kinds(), []
    for doc in docs:
        if doc.get("kind") not in known:
            continue
        where = f"{doc['kind']}/{doc.get('metadata', {}).get('name')}"
        schema = schemas().get((doc.get("apiVersion", ""), doc["kind"]))
        if schema is None:
            served = sorted(v for v, k in schemas() if k == doc["kind"])
            problems.append(f"{where}: apiVersion {doc.get('apiVersion')!r} is not served (served: {served})")
            continue
        validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in error.absolute_path) or "(root)"
            problems.append(f"{where}: {path}: {error.message}")
    return problems
