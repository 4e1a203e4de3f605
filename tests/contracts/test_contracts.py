"""The boundary documents: schema snapshots in step with the models, v1 documents still read, and every
unusable document refused by name (on the worker's side and on the orchestrator's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import leviathan_lib
from leviathan_lib.contracts import snapshots
from leviathan_lib.contracts.attempt import RESULT_READER, SPEC_READER, AttemptResult
from leviathan_lib.contracts.recipes import parse_recipes_file
from leviathan_lib.contracts.versions import ContractError, Reader
from leviathan_lib.contracts.xcom import GUARDRAILS_READER, READ_READER, read_xcom
from leviathan_lib.core.errors import ValidationFailed
from leviathan_lib.cycle.untrusted import sanitize_result_document
from leviathan_lib.evidence.records import parse_records

ROOT = Path(leviathan_lib.__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
READERS = {"attempt_spec": SPEC_READER, "attempt_result": RESULT_READER, "xcom_read": READ_READER,
           "xcom_guardrails": GUARDRAILS_READER}


def fixture(name: str, version: int = 1) -> dict:
    return json.loads((FIXTURES / f"{name}.v{version}.json").read_text(encoding="utf-8"))


def test_every_snapshot_is_current():
    assert snapshots.stale() == [], f"a boundary document changed: run `{snapshots.REGENERATE}` (and bump its " \
                                    "version if a reader of the old one cannot read it; docs/architecture.md)"


def test_a_changed_model_is_caught_and_the_message_says_how_to_regenerate(monkeypatch):
    class Wider(AttemptResult):
        new_field: int = 0

    document = snapshots.DOCUMENTS["attempt_result"]
    monkeypatch.setitem(snapshots.DOCUMENTS, "attempt_result",
                        snapshots.Document(Wider, document.version, document.travels))
    assert snapshots.stale() == ["attempt_result.v1"]
    assert "--write" in snapshots.REGENERATE and "leviathan_lib.contracts.snapshots" in snapshots.REGENERATE


def test_every_snapshot_file_is_a_registered_document_and_every_document_has_a_v1_fixture():
    files = sorted(p.name for p in snapshots.SCHEMA_DIR.glob("*.json"))
    expected = sorted(f"{name}.v{v}.json" for name, d in snapshots.DOCUMENTS.items() for v in range(1, d.version + 1))
    assert files == expected  # older majors stay: they are what the one-version-back readers read
    assert sorted(p.name for p in FIXTURES.glob("*.v1.json")) == sorted(f"{n}.v1.json" for n in snapshots.DOCUMENTS)


@pytest.mark.parametrize("name", sorted(snapshots.DOCUMENTS))
def test_the_v1_document_the_docs_promise_to_read_is_read_and_matches_its_snapshot(name):
    document = fixture(name)
    schema = json.loads(snapshots.snapshot_path(name, 1).read_text(encoding="utf-8"))
    jsonschema.validate(document, schema)
    if name in READERS:
        assert READERS[name].read(json.dumps(document)).model_dump(mode="json")[READERS[name].version_field] == 1
    elif name == "recipes_file":  # JSON is YAML: the fixture is a recipes file as a repository holds it
        assert parse_recipes_file(json.dumps(document), "recipes.yaml").version == 1
    else:
        history = parse_records([("run-1", document)])
        assert history.unreadable == [] and len(history.cycles + history.resets + history.switches) == 1


def _result_text(**changes) -> str:
    return json.dumps({**fixture("attempt_result"), **changes})


@pytest.mark.parametrize(("text", "code", "says"), [
    (_result_text(result_version=2), "result_version_unsupported", "upgrade this reader first"),
    (_result_text(result_version=0), "result_version_unsupported", "its writer is too old"),
    (_result_text()[:-40], "result_truncated", "ends early"),
    ("", "result_truncated", "ends early"),
    (_result_text(surprise="x"), "result_invalid", "surprise: Extra inputs are not permitted"),
    (json.dumps({k: v for k, v in fixture("attempt_result").items() if k != "result_version"}), "result_invalid",
     "no integer 'result_version'"),
    ("[1, 2]", "result_invalid", "expected a JSON object, got list"),
    ("{not json}", "result_invalid", "not JSON"),
])
def test_an_unusable_result_is_refused_by_name(text, code, says):
    with pytest.raises(ContractError) as info:
        RESULT_READER.read(text)
    assert info.value.code == code and says in str(info.value)
    stored = sanitize_result_document(text)  # what the pod's XCom becomes: a failed result naming why
    assert stored["outcome"] == "failed" and stored["error"]["code"] == code and "surprise" not in stored


def test_the_local_backends_start_annotation_is_the_one_extra_key_read():
    read = RESULT_READER.read({**fixture("attempt_result"), "attempt_started_at": "2026-12-01T09:59:58Z"})
    assert read.outcome == "succeeded"


def test_the_worker_refuses_a_spec_version_it_does_not_read_with_a_named_error(tmp_path):
    spec, output = tmp_path / "spec.json", tmp_path / "out" / "result.json"
    spec.write_text(json.dumps({**fixture("attempt_spec"), "spec_version": 2}))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", "leviathan_lib.worker", "--spec", str(spec), "--output", str(output),
                           "--workspace", str(tmp_path / "ws")], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    result = RESULT_READER.read(output.read_text(encoding="utf-8"))
    assert result.error is not None and result.error.code == "spec_version_unsupported"
    assert "spec_version 2 is not readable here (reads 1)" in result.error.message
    spec.write_text(json.dumps(fixture("attempt_spec"))[:-30])
    subprocess.run([sys.executable, "-m", "leviathan_lib.worker", "--spec", str(spec), "--output", str(output),
                    "--workspace", str(tmp_path / "ws2")], env=env, capture_output=True, text=True, timeout=120,
                   check=True)
    result = RESULT_READER.read(output.read_text(encoding="utf-8"))
    assert result.error is not None and result.error.code == "invalid_spec" and "ends early" in result.error.message


def test_a_recipes_file_without_a_version_is_v1_and_a_newer_one_is_refused_naming_the_field():
    document = {k: v for k, v in fixture("recipes_file").items() if k != "version"}
    assert parse_recipes_file(json.dumps(document), "recipes.yaml").version == 1
    with pytest.raises(ValidationFailed) as info:
        parse_recipes_file(json.dumps({**document, "version": 2}), "recipes.yaml")
    assert [(p.file, p.field) for p in info.value.problems] == [("recipes.yaml", "version")]


def test_a_reader_lifts_the_version_before_to_its_own_and_refuses_two_back():
    """The rolling-upgrade promise on a document of version 2 whose version 1 named a field differently."""
    from pydantic import BaseModel, ConfigDict

    class Doc(BaseModel):
        model_config = ConfigDict(extra="forbid")
        v: int
        name: str

    reader = Reader("doc", Doc, "v", (1, 2), {"version_unsupported": "doc_version_unsupported",
                                               "truncated": "doc_truncated", "invalid": "doc_invalid"},
                    upgrades={1: lambda d: {"v": 2, "name": d["title"]}})
    assert reader.read('{"v": 1, "title": "old"}') == Doc(v=2, name="old")
    assert reader.read({"v": 2, "name": "new"}) == Doc(v=2, name="new")
    with pytest.raises(ContractError, match="doc: v 3 is not readable here"):
        reader.read({"v": 3, "name": "x"})


@pytest.mark.parametrize(("name", "reader"), [("xcom_read", READ_READER), ("xcom_guardrails", GUARDRAILS_READER)])
def test_the_xcoms_read_the_unversioned_release_before_and_refuse_a_newer_one_by_name(name, reader):
    """A run planned by the release before ``xcom_version`` existed and finished after the upgrade: read as v1."""
    document = fixture(name)
    unversioned = {k: v for k, v in document.items() if k != "xcom_version"}
    assert read_xcom(reader, unversioned) == read_xcom(reader, document)
    with pytest.raises(ContractError) as info:
        read_xcom(reader, {**document, "xcom_version": 2})
    assert info.value.code == f"{name}_version_unsupported" and "upgrade this reader first" in info.value.message
    with pytest.raises(ContractError) as info:
        read_xcom(reader, {**document, "repo_url" if name == "xcom_read" else "replay": [1]})
    assert info.value.code == f"{name}_invalid"

