"""docs/instance.schema.json is generated from the model; examples/instance.yaml follows it and the rules."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from tandem_cli.instances import load_config
from tandem_shared.contracts.instances import instance_json_schema
from tandem_shared.instance_validation.rules import validate_instance

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = ROOT / "docs" / "instance.schema.json"
EXAMPLE = ROOT / "examples" / "instance.yaml"


def test_the_published_schema_is_the_one_the_model_generates() -> None:
    published = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert published == instance_json_schema(), (
        "docs/instance.schema.json is out of date: regenerate it with "
        "`tandem instances schema > docs/instance.schema.json`"
    )


def test_the_example_file_satisfies_the_schema_the_model_and_the_rules() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    jsonschema.validate(data, json.loads(SCHEMA.read_text(encoding="utf-8")))
    config = load_config(EXAMPLE)
    report = validate_instance(config)
    assert report.ok, report.errors
    assert {m.mailchimp for m in config.mappings} >= {"FNAME", "LNAME", "EMAIL", "BIRTHDAY"}


def test_the_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["mailchimp"]["api_key"] = "0123456789abcdef0123456789abcdef-us6"
    validator = jsonschema.Draft202012Validator(schema)
    assert [e.json_path for e in validator.iter_errors(data)] == ["$.mailchimp.api_key"]
