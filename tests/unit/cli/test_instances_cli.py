"""`tandem instances validate` and the pure parts of apply, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem_cli.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from tandem_cli.instances import ConfigFileError, load_config, next_config, same_settings
from tandem_cli.main import main
from tandem_shared.instances import demo_instance

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "instance.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "instance.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_validate_offline_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["instances", "validate", "-f", str(EXAMPLE), "--offline"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "instance 'acme-training' is valid (6 mappings" in out


def test_validate_names_each_rule_broken_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'accessplanit: "custom:Mailchimp Birthday", transform: birthday', "accessplanit: DOB"
    )
    text = text.replace("  - {mailchimp: LNAME, accessplanit: Surname}\n", "")
    code = main(["instances", "validate", "-f", str(write(tmp_path, text)), "--offline"])
    err = capsys.readouterr().err
    assert code == EXIT_INVALID
    assert "error    mappings: accessplanit → Mailchimp needs LNAME mapped" in err
    assert "error    mappings[4]: Mailchimp BIRTHDAY holds a birthday as MM/DD" in err
    assert "instance 'acme-training' is not valid" in err


def test_a_yaml_syntax_error_is_a_usage_error_with_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as caught:
        load_config(write(tmp_path, "id: x\nmappings: [\n"))
    assert caught.value.code == EXIT_USAGE
    assert "not valid YAML (line 3" in caught.value.lines[0]


def test_a_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["instances", "validate", "-f", str(tmp_path / "nope.yaml")]) == EXIT_USAGE
    assert "cannot be read" in capsys.readouterr().err


def test_structural_errors_name_the_field(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace("direction: both", "direction: sideways")
    text = text.replace("api_key: env:TANDEM_DEMO_MAILCHIMP_API_KEY", "api_key: abcdef0123-us6")
    text = text.replace("status_if_new: subscribed", "status_if_new: subscribed\n  colour: blue")
    with pytest.raises(ConfigFileError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.code == EXIT_INVALID
    lines = caught.value.lines
    assert lines[0].endswith("3 error(s), nothing was applied")
    assert any(
        line.strip().startswith("error    direction: Input should be 'accessplanit_to_mailchimp'") for line in lines
    )
    assert any("mailchimp.api_key: a secret must be a reference" in line for line in lines)
    assert any("mailchimp.colour: not a setting of this section" in line for line in lines)


def test_apply_publishes_the_next_version_and_keeps_the_pause_the_file_does_not_mention() -> None:
    current = demo_instance().model_copy(update={"version": 4, "paused": True})
    from_file = demo_instance().model_copy(update={"name": "Renamed"})
    new = next_config(type(from_file).model_validate(from_file.model_dump(exclude={"paused"})), current)
    assert new.version == 5
    assert new.paused is True
    assert new.name == "Renamed"
    assert next_config(from_file, None).version == 1
    assert not same_settings(new, current)
    assert same_settings(current.model_copy(update={"version": 9}), current)


def test_a_file_that_sets_paused_decides_it() -> None:
    current = demo_instance().model_copy(update={"version": 2, "paused": True})
    from_file = type(current).model_validate({**demo_instance().model_dump(), "paused": False})
    assert next_config(from_file, current).paused is False
