from leviathan_lib.core.guardrails import ReasonCode
from leviathan_lib.core.reasons import EXPLAIN, explain


def test_every_reason_code_is_explained_once():
    assert set(EXPLAIN) == set(ReasonCode)
    assert all(text and text == text.strip() for text in EXPLAIN.values())


def test_an_unknown_code_points_at_the_evidence():
    assert explain("not_ready").startswith("not marked ready")
    assert explain("from_the_future") == "see the cycle evidence"
