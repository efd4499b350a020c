"""docs/asyncapi.yaml is what `faststream docs gen` makes of the trace contract today (`make asyncapi` renews it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "docs" / "asyncapi.yaml"


def test_the_committed_asyncapi_document_matches_the_contract(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.yaml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "faststream",
            "docs",
            "gen",
            "tandem_console.trace_spec:app",
            "--yaml",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    # Compared as documents, not text: FastStream lists the publishers of one broker in no fixed order (a WeakSet),
    # and the trace has several (the record, and what `data_out` holds in erasure and audit records).
    generated = yaml.safe_load(out.read_text())
    assert generated == yaml.safe_load(COMMITTED.read_text()), (
        "docs/asyncapi.yaml is stale: the trace contract changed. Run `make asyncapi` and commit the result."
    )


def test_the_document_describes_every_trace_record_field() -> None:
    from tandem_shared.contracts import TraceRecord

    document = yaml.safe_load(COMMITTED.read_text())
    schema = document["components"]["schemas"]["TraceRecord"]
    assert set(schema["properties"]) == set(TraceRecord.model_fields)
    assert {channel["address"] for channel in document["channels"].values()} == {"tandem.trace"}
