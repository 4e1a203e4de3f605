"""The cycle record from whatever the earlier tasks left: a missing read or decision stops it early."""

from leviathan_lib.contracts.xcom import CycleError, GuardrailResult, ReadResult
from leviathan_lib.core.config import TargetConfig
from leviathan_lib.cycle.steps import build_record

TARGET = TargetConfig(target_id="t", target_repo_url="x")
READ = ReadResult(repo_url="x", branch="main", backlog_path=".leviathan/backlog.yaml", commit_sha="abc")


def _record(**kwargs):
    values = {"dag_run_id": "r1", "run_type": "manual", "read": READ, "guard": None, "attempt": None, **kwargs}
    return build_record(TARGET, **values)


def test_a_lost_read_or_decision_is_an_error_with_its_code():
    assert _record(read=None).stopped_reason == "read_failed"
    failed = _record(read=None, failure=CycleError(code="forge_state_unknown", message="down"))
    assert (failed.decision, failed.reasons, failed.stopped_detail) == ("error", ["forge_state_unknown"], "down")
    assert _record(guard=None).stopped_reason == "guardrails_failed"
    assert _record(guard=GuardrailResult()).stopped_reason == "guardrails_failed"


def test_a_read_error_beats_a_missing_decision():
    read = READ.model_copy(update={"error": CycleError(code="backlog_missing", message="no file")})
    record = _record(read=read, failure=CycleError(code="guardrails_failed", message="x"))
    assert (record.stopped_reason, record.stopped_detail, record.commit_sha) == ("backlog_missing", "no file", "abc")
