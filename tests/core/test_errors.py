"""One error family: every deliberate failure carries a stable code and a human message."""

import pytest

from leviathan_lib.control.switch import UnknownTarget
from leviathan_lib.core.errors import CodedError, LeviathanError, Problem, ValidationFailed
from leviathan_lib.core.scope import ScopeViolation
from leviathan_lib.cycle.delivery import DeliveryRejected
from leviathan_lib.cycle.diffcheck import DiffCheckError
from leviathan_lib.cycle.repo_reader import RepoUnreachable
from leviathan_lib.forge.base import ForgeConflict, ForgeError, PullRequestNotFound
from leviathan_lib.worker.llm import ToolRefused


def test_a_leviathan_error_has_a_code_and_its_message_is_its_text():
    error = LeviathanError("some_code", "what went wrong")
    assert (error.code, error.message, str(error)) == ("some_code", "what went wrong", "what went wrong")


@pytest.mark.parametrize(("cls", "code", "also"), [
    (ForgeError, "forge_error", None), (ForgeConflict, "forge_conflict", ForgeError),
    (PullRequestNotFound, "pr_not_found", ForgeError), (RepoUnreachable, "repo_unreachable", None),
    (DiffCheckError, "diff_failed", RuntimeError), (ScopeViolation, "scope_violation", ValueError),
    (ToolRefused, "tool_refused", None), (UnknownTarget, "unknown_target", LookupError),
])
def test_message_only_errors_keep_their_base_and_get_their_class_code(cls, code, also):
    error = cls("detail")
    assert isinstance(error, CodedError) and isinstance(error, LeviathanError)
    assert also is None or isinstance(error, also)
    assert (error.code, str(error)) == (code, "detail")
    with pytest.raises(LeviathanError, match="detail"):
        raise error


def test_delivery_rejected_keeps_the_code_it_is_given():
    error = DeliveryRejected("backlog_edited", "only humans edit the backlog")
    assert isinstance(error, LeviathanError) and error.code == "backlog_edited"
    assert str(error) == "only humans edit the backlog"


def test_validation_failed_lists_its_problems():
    error = ValidationFailed([Problem("t.yaml", "ready", "expected a boolean", 3), Problem("t.yaml", "", "bad")])
    assert isinstance(error, LeviathanError) and error.code == "validation_failed"
    assert str(error) == "t.yaml:3: ready: expected a boolean\nt.yaml: bad"
    assert len(error.problems) == 2
